//! The `bindu` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bindu::Config;
use bindu_engine::config::ConfigError;
use clap::{Args, Parser, Subcommand};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "bindu",
    version,
    about = "A2A agent engine: turn any handler into an A2A v0.3.0 service"
)]
struct Cli {
    /// TOML configuration file (also BINDU_CONFIG).
    #[arg(long, global = true, env = "BINDU_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: HTTP ingress and worker pool in one process.
    Serve(Overrides),
    /// Run only the HTTP ingress (needs STORAGE_TYPE=postgres and SCHEDULER_TYPE=nats or redis).
    Ingress(Overrides),
    /// Run only a worker pool (needs STORAGE_TYPE=postgres and SCHEDULER_TYPE=nats or redis).
    Worker(Overrides),
    /// Run only the webhook dispatcher (needs STORAGE_TYPE=postgres and SCHEDULER_TYPE=nats or redis;
    /// one per agent).
    Dispatcher(Overrides),
    /// Webhook dead letters.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Payments of a priced agent (x402; needs STORAGE_TYPE=postgres).
    #[command(subcommand)]
    Payments(PaymentsCommand),
    /// Print the effective configuration (secrets redacted) and exit.
    Config(Overrides),
    /// Apply the task store's database migrations (Postgres) and exit.
    Migrate(Overrides),
    /// Maintain stored tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// The agent's identity.
    #[command(subcommand)]
    Did(DidCommand),
    /// Call an A2A agent: `bindu call http://127.0.0.1:3773/ message/send '{"message":…}'`.
    /// Streaming methods print one event per line.
    Call {
        /// The agent's JSON-RPC URL.
        url: String,
        /// The method, e.g. message/send, tasks/get.
        method: String,
        /// Params as JSON (default `{}`); a bare text for message/send and message/stream
        /// becomes a user message.
        params: Option<String>,
        /// Bearer token (also BINDU_TOKEN).
        #[arg(long, env = "BINDU_TOKEN")]
        token: Option<String>,
        /// Sign the request with this machine's agent key (BINDU_KEY_DIR) as its DID.
        #[arg(long)]
        sign: bool,
        /// PEM CA bundle to trust for https URLs instead of the built-in web roots.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<std::path::PathBuf>,
        /// PEM client certificate (chain) for mutual TLS; with --key-file.
        #[arg(long, value_name = "PEM", requires = "key_file")]
        cert_file: Option<std::path::PathBuf>,
        /// PEM PKCS#8 private key of --cert-file.
        #[arg(long, value_name = "PEM", requires = "cert_file")]
        key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Subcommand)]
enum DidCommand {
    /// Print the agent's DIDs and public key (creates the key pair on first use).
    Show(Overrides),
    /// Replace the key pair with a new one (the DID changes: tell the agent's callers).
    New(Overrides),
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// List notifications the dispatcher gave up on, and those it parked and still retries
    /// (REPLAYED says `retrying`), newest first.
    DeadLetters {
        /// Most dead letters listed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Include those already replayed.
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Post dead letters again (to the webhook's current URL and token), oldest first.
    Replay {
        /// Dead-letter ids (from `bindu webhooks dead-letters`).
        ids: Vec<String>,
        /// Replay every pending dead letter the dispatcher gave up on (among the newest
        /// --limit pending ones) instead of naming ids; parked ones it still retries are left
        /// to it.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Subcommand)]
enum PaymentsCommand {
    /// List payments, newest first: by default those whose settlement outcome is unknown
    /// (orphaned).
    List {
        /// Only payments in this state: verified, settling, settled, refused, orphaned,
        /// unpaid, or all.
        #[arg(long, default_value = "orphaned")]
        state: String,
        /// Most payments listed.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Ask the facilitator again about every orphaned payment and resolve its task
    /// (completed with the result, or failed and not charged); exits 1 if any is still
    /// unresolved.
    Reconcile {
        #[command(flatten)]
        overrides: Overrides,
    },
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Delete terminal tasks (completed, failed, canceled, rejected) older than a duration.
    /// Without --yes, only counts them.
    Purge {
        /// Age of the last change, e.g. 30d, 12h, 90m.
        #[arg(long)]
        older_than: String,
        /// Really delete (default: dry run that prints the count).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        overrides: Overrides,
    },
}

/// Flags that override the file and the environment.
#[derive(Args, Default)]
struct Overrides {
    /// Address to bind (server.host / BINDU_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Port to bind (server.port / BINDU_PORT).
    #[arg(long)]
    port: Option<String>,
    /// Public base URL for the agent card (server.deployment_url / BINDU_DEPLOYMENT_URL).
    #[arg(long)]
    deployment_url: Option<String>,
    /// Log level or filter (logging.default_level / LOGGING__DEFAULT_LEVEL).
    #[arg(long)]
    log_level: Option<String>,
    /// Handlers running at once (worker.concurrency / BINDU_WORKER_CONCURRENCY).
    #[arg(long)]
    concurrency: Option<String>,
}

impl Overrides {
    fn flags(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut out = Vec::new();
        let mut push = |key, v: &Option<String>, flag| {
            if let Some(v) = v {
                out.push((key, v.clone(), flag));
            }
        };
        push("server.host", &self.host, "--host");
        push("server.port", &self.port, "--port");
        push(
            "server.deployment_url",
            &self.deployment_url,
            "--deployment-url",
        );
        push("logging.default_level", &self.log_level, "--log-level");
        push("worker.concurrency", &self.concurrency, "--concurrency");
        out
    }
}

impl Command {
    /// The flags every subcommand takes.
    fn overrides(&self) -> &Overrides {
        match self {
            Command::Serve(o)
            | Command::Ingress(o)
            | Command::Worker(o)
            | Command::Dispatcher(o)
            | Command::Config(o)
            | Command::Migrate(o) => o,
            Command::Tasks(TasksCommand::Purge { overrides, .. }) => overrides,
            Command::Webhooks(
                WebhooksCommand::DeadLetters { overrides, .. }
                | WebhooksCommand::Replay { overrides, .. },
            ) => overrides,
            Command::Payments(
                PaymentsCommand::List { overrides, .. } | PaymentsCommand::Reconcile { overrides },
            ) => overrides,
            Command::Did(DidCommand::Show(o) | DidCommand::New(o)) => o,
            Command::Call { overrides, .. } => overrides,
        }
    }
}

fn load(cli_config: Option<&PathBuf>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let flags = overrides.flags();
    let flags: Vec<(&str, String, &str)> =
        flags.iter().map(|(k, v, f)| (*k, v.clone(), *f)).collect();
    Config::load(
        cli_config.map(|p| p.as_path()),
        &|k| std::env::var(k).ok(),
        &flags,
    )
}

fn main() -> ExitCode {
    // A .env file in the working directory fills in variables that are not already set.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let config = match load(cli.config.as_ref(), cli.command.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bindu: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config(_) => {
            print!("{}", config.render());
            ExitCode::SUCCESS
        }
        Command::Call {
            url,
            method,
            params,
            token,
            sign,
            ca_file,
            cert_file,
            key_file,
            ..
        } => {
            let tls = TlsFiles {
                ca: ca_file,
                cert: cert_file,
                key: key_file,
            };
            let work = call(&config, url, method, params, token, sign, tls);
            if config.telemetry.enabled {
                // The call is a client span; the agent's trace continues it.
                logged(&config, work)
            } else {
                block_on(work)
            }
        }
        Command::Did(cmd) => did(&config, matches!(cmd, DidCommand::New(_))),
        Command::Tasks(TasksCommand::Purge {
            older_than, yes, ..
        }) => match bindu_engine::config::parse_duration(&older_than) {
            Ok(age) => logged(&config, purge(&config, age, !yes)),
            Err(e) => {
                eprintln!("bindu: --older-than: {e}");
                ExitCode::from(2)
            }
        },
        Command::Webhooks(WebhooksCommand::DeadLetters {
            limit, all, json, ..
        }) => logged(&config, dead_letters(&config, limit, all, json)),
        Command::Webhooks(WebhooksCommand::Replay {
            ids, all, limit, ..
        }) => {
            if ids.is_empty() && !all {
                eprintln!("bindu: name the dead letters to replay, or pass --all");
                return ExitCode::from(2);
            }
            logged(&config, replay(&config, ids, limit))
        }
        Command::Payments(PaymentsCommand::List {
            state, limit, json, ..
        }) => {
            let state = match state.as_str() {
                "all" => None,
                s => match bindu_engine::store::PaymentState::parse(s) {
                    Some(s) => Some(s),
                    None => {
                        eprintln!("bindu: --state: expected verified, settling, settled, refused, orphaned, unpaid or all, got {s:?}");
                        return ExitCode::from(2);
                    }
                },
            };
            logged(&config, payments(&config, state, limit, json))
        }
        Command::Payments(PaymentsCommand::Reconcile { .. }) => logged(&config, reconcile(&config)),
        Command::Migrate(_) => logged(&config, migrate(&config)),
        Command::Serve(_) => run(config, bindu::Role::Serve),
        Command::Ingress(_) => run(config, bindu::Role::Ingress),
        Command::Worker(_) => run(config, bindu::Role::Worker),
        Command::Dispatcher(_) => run(config, bindu::Role::Dispatcher),
    }
}

/// Runs `work` to its end: success, exit 1 when it reports a failure (`false`), or the
/// error printed and a failure.
fn block_on(work: impl std::future::Future<Output = anyhow::Result<bool>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bindu: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("bindu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// [`block_on`] with logging (and traces, `TELEMETRY_ENABLED`) set up from `config`.
fn logged(
    config: &Config,
    work: impl std::future::Future<Output = anyhow::Result<bool>>,
) -> ExitCode {
    let Some(telemetry) = telemetry(config) else {
        return ExitCode::from(2);
    };
    let code = block_on(work);
    drop(telemetry);
    code
}

/// Logging and traces; `None` (the reason printed) when the exporter cannot be built. Spans
/// are exported while the result lives; dropping it exports what is queued.
fn telemetry(config: &Config) -> Option<bindu::telemetry::Telemetry> {
    match bindu::telemetry::init_with_traces(config) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("bindu: telemetry (TELEMETRY_ENABLED, OLTP_*, OTEL_*): {e}");
            None
        }
    }
}

/// `bindu serve|ingress|worker|dispatcher`: runs until SIGTERM or Ctrl-C.
fn run(config: Config, role: bindu::Role) -> ExitCode {
    if role != bindu::Role::Serve {
        if let Some(why) = config.distributed_problem() {
            eprintln!(
                "bindu: refusing to start a separate {} process: {why}",
                role.command()
            );
            return ExitCode::from(2);
        }
    }
    let Some(telemetry) = telemetry(&config) else {
        return ExitCode::from(2);
    };
    let code = block_on(async move { serve_until_signal(config, role).await.map(|()| true) });
    drop(telemetry);
    code
}

/// `bindu did show|new`.
fn did(config: &Config, recreate: bool) -> ExitCode {
    match bindu::load_identity(config, recreate) {
        Ok((id, created)) => {
            println!("did:        {}", id.did);
            println!("did:key:    {}", id.did_key());
            println!("agent id:   {}", id.agent_id());
            println!("public key: {} (base58)", id.public_key_base58());
            println!(
                "key dir:    {} ({})",
                config.identity.dir.display(),
                if created {
                    "new key pair"
                } else {
                    "existing key pair"
                }
            );
            if recreate {
                eprintln!(
                    "bindu: the agent has a new DID; callers that trusted the old one must be told"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bindu: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bindu call` HTTPS options.
struct TlsFiles {
    ca: Option<std::path::PathBuf>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
}

/// `bindu call`: prints the response (or each stream event) as JSON; false on an error reply.
async fn call(
    config: &Config,
    url: String,
    method: String,
    params: Option<String>,
    token: Option<String>,
    sign: bool,
    tls: TlsFiles,
) -> anyhow::Result<bool> {
    let streaming = matches!(method.as_str(), "message/stream" | "tasks/resubscribe");
    let params: serde_json::Value = match params {
        None => serde_json::json!({}),
        Some(p) => match serde_json::from_str(&p) {
            Ok(v) => v,
            Err(_) if method.starts_with("message/") => serde_json::json!({"message": {
                "role": "user", "kind": "message",
                "messageId": format!("cli-{}", std::process::id()) + &format!("-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)),
                "parts": [{"kind": "text", "text": p}]}}),
            Err(e) => anyhow::bail!("params are not JSON: {e}"),
        },
    };
    let mut client = bindu::client::Client::new(url)?;
    if tls.ca.is_some() || tls.cert.is_some() {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        };
        let ca = tls.ca.as_deref().map(read).transpose()?;
        let identity = match (&tls.cert, &tls.key) {
            (Some(c), Some(k)) => {
                let mut pem = read(c)?;
                pem.push(b'\n');
                pem.extend(read(k)?);
                Some(pem)
            }
            _ => None,
        };
        client = client.with_tls(ca.as_deref(), identity.as_deref())?;
    }
    if let Some(t) = token {
        client = client.with_token(t);
    }
    if sign {
        let (identity, _) = bindu::load_identity(config, false)?;
        let did = identity.did.clone();
        client = client.with_signer(std::sync::Arc::new(identity), did);
    }
    let mut ok = true;
    if streaming {
        let status = client
            .stream(&method, params, |event| {
                if event.get("error").is_some() {
                    ok = false;
                }
                println!("{event}");
            })
            .await?;
        Ok(ok && status < 400)
    } else {
        let (status, body) = client.call(&method, params).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        Ok(status < 400 && body.get("error").is_none())
    }
}

/// `bindu webhooks dead-letters`: a table, or one JSON object per line.
async fn dead_letters(config: &Config, limit: u32, all: bool, json: bool) -> anyhow::Result<bool> {
    let letters = bindu::list_dead_letters(config, limit, !all).await?;
    if json {
        for d in &letters {
            println!(
                "{}",
                serde_json::json!({
                    "id": d.id, "taskId": d.task_id, "eventId": d.event_id, "sequence": d.seq,
                    "configId": d.config_id, "url": d.url, "attempts": d.attempts,
                    "lastError": d.last_error, "createdAt": d.created_at,
                    "replayedAt": d.replayed_at, "retrying": d.retrying, "body": d.body,
                })
            );
        }
        return Ok(true);
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(true);
    }
    println!("ID\tCREATED\tATTEMPTS\tURL\tLAST ERROR\tREPLAYED");
    for d in &letters {
        let replayed = match (&d.replayed_at, d.retrying) {
            (Some(at), _) => at.as_str(),
            // Parked: the dispatcher still retries it by itself.
            (None, true) => "retrying",
            (None, false) => "-",
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            d.id, d.created_at, d.attempts, d.url, d.last_error, replayed
        );
    }
    Ok(true)
}

/// `bindu webhooks replay`; false when any could not be delivered.
async fn replay(config: &Config, ids: Vec<String>, limit: u32) -> anyhow::Result<bool> {
    let results = bindu::replay_dead_letters(config, ids, limit).await?;
    if results.is_empty() {
        println!("no pending dead letters");
    }
    let mut ok = true;
    for (id, r) in results {
        match r {
            Ok(attempts) => println!("{id}: delivered ({attempts} attempt(s))"),
            Err(e) => {
                ok = false;
                println!("{id}: not delivered: {e}");
            }
        }
    }
    Ok(ok)
}

/// `bindu payments list`: a table, or one JSON object per line.
async fn payments(
    config: &Config,
    state: Option<bindu_engine::store::PaymentState>,
    limit: u32,
    json: bool,
) -> anyhow::Result<bool> {
    let records = bindu::list_payments(config, state, limit).await?;
    if json {
        for r in &records {
            println!(
                "{}",
                serde_json::json!({
                    "taskId": r.task_id, "nonce": r.nonce, "state": r.state.as_str(),
                    "payer": r.payment.payer, "network": r.payment.requirements.network,
                    "amount": r.payment.requirements.amount, "attempts": r.attempts,
                    "error": r.error, "receipt": r.receipt, "createdAt": r.created_at,
                    "updatedAt": r.updated_at,
                })
            );
        }
        return Ok(true);
    }
    if records.is_empty() {
        println!("no payments");
        return Ok(true);
    }
    println!("TASK\tSTATE\tPAYER\tAMOUNT\tNETWORK\tATTEMPTS\tUPDATED\tTRANSACTION OR ERROR");
    for r in &records {
        let detail = match (&r.receipt, &r.error) {
            (Some(receipt), _) if receipt.success => receipt.transaction.clone(),
            (Some(receipt), _) => receipt.error_reason.clone().unwrap_or_default(),
            (None, Some(e)) => e.clone(),
            (None, None) => "-".into(),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.task_id,
            r.state,
            r.payment.payer,
            r.payment.requirements.amount,
            r.payment.requirements.network,
            r.attempts,
            r.updated_at,
            detail
        );
    }
    Ok(true)
}

/// `bindu payments reconcile`; false when any payment is still unresolved.
async fn reconcile(config: &Config) -> anyhow::Result<bool> {
    use bindu_workers::payments::reconcile::Resolution;
    let done = bindu::reconcile_payments(config).await?;
    if done.is_empty() {
        println!("no orphaned payments");
    }
    let mut ok = true;
    for r in done {
        let what = match &r.resolution {
            Resolution::Settled => {
                "settled: the task completes with its result (at once, or when its run delivers it)"
                    .to_string()
            }
            Resolution::Refused(why) => {
                format!("refused ({why}): the task failed, nothing charged")
            }
            Resolution::Unknown(why) => {
                ok = false;
                format!("still unknown ({why}): asked again on the next pass")
            }
            Resolution::TaskNotUpdated(why) => {
                ok = false;
                format!("resolved, but the task was not updated: {why}")
            }
        };
        println!("{} {}: {what}", r.task_id, r.nonce);
    }
    Ok(ok)
}

/// `bindu migrate`.
async fn migrate(config: &Config) -> anyhow::Result<bool> {
    if bindu::admin::migrate(config).await? {
        println!("migrations applied");
    } else {
        println!("nothing to migrate: STORAGE_TYPE is memory");
    }
    Ok(true)
}

/// `bindu tasks purge`.
async fn purge(config: &Config, age: std::time::Duration, dry_run: bool) -> anyhow::Result<bool> {
    let n = bindu::admin::purge(config, age, dry_run).await?;
    let age = bindu_engine::config::format_duration(age);
    if dry_run {
        println!("{n} terminal task(s) older than {age} would be deleted; run again with --yes to delete them");
    } else {
        println!("deleted {n} terminal task(s) older than {age}");
    }
    Ok(true)
}

async fn serve_until_signal(config: Config, role: bindu::Role) -> anyhow::Result<()> {
    let handler = match role {
        bindu::Role::Ingress | bindu::Role::Dispatcher => None,
        _ => Some(bindu::builtin_handler(&config)?),
    };
    let concurrency = config.worker.concurrency;
    let server = bindu::launch(config, handler, role).await?;
    match server.http_addr() {
        Some(addr) => eprintln!(
            "bindu: agent listening on {addr} (card: {}/.well-known/agent-card.json)",
            server.base_url()
        ),
        None => {
            let probes = server.probe_addr().map_or_else(
                || "no probes: the metrics address is empty".to_string(),
                |a| format!("probes and metrics on http://{a}"),
            );
            if role == bindu::Role::Dispatcher {
                eprintln!("bindu: webhook dispatcher running ({probes})")
            } else {
                eprintln!("bindu: worker running (concurrency {concurrency}; {probes})")
            }
        }
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
    server.wait().await.context("server stopped with an error")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
