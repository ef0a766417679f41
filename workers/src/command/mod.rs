//! The `command` handler: any executable speaking the JSON-lines protocol of [`protocol`]
//! on stdin/stdout (`BINDU_HANDLER=command`, `BINDU_HANDLER_COMMAND="python3 agent.py"`).
//!
//! - [`protocol`]: the lines exchanged.
//! - [`process`]: one long-lived process (spawn, bounded line reads, stderr tail, kill).
//!
//! A pool of at most `processes` long-lived processes serves the tasks, one task per process
//! at a time; more tasks wait for a free process. A process that exits, prints something
//! that is not a protocol line, or does not stop when a task is canceled fails only its task
//! (quoting the tail of its stderr) and is replaced by a new one for the next task.

pub mod process;
pub mod protocol;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::handler::{ArtifactStream, Handler, HandlerError, HandlerInput, HandlerOutput};
use process::AgentProcess;
use protocol::{parts_of, CancelLine, Reply, TaskLine};

#[derive(Debug, Clone)]
pub struct CommandOptions {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Most processes alive at once (= tasks served at once).
    pub processes: usize,
    /// Longest stdout line accepted.
    pub max_line_bytes: usize,
    /// After a cancel line, how long the process may take to print its final line before it
    /// is killed. Keep it under [`crate::pool::CANCEL_GRACE`].
    pub cancel_grace: Duration,
    /// Names of variables passed to the process besides [`process::DEFAULT_ENV`] (a
    /// trailing `*` is a prefix); nothing else of the engine's environment is.
    pub env: Vec<String>,
}

impl CommandOptions {
    pub fn new(argv: Vec<String>) -> Self {
        CommandOptions {
            argv,
            processes: 4,
            max_line_bytes: 10 * 1024 * 1024,
            cancel_grace: Duration::from_millis(500),
            env: Vec::new(),
        }
    }
}

/// Why the handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty (set BINDU_HANDLER_COMMAND)")]
    Empty,
    #[error("the program {0:?} was not found (BINDU_HANDLER_COMMAND; looked in PATH)")]
    NotFound(String),
}

pub struct CommandHandler {
    options: CommandOptions,
    slots: Arc<Semaphore>,
    idle: std::sync::Mutex<Vec<AgentProcess>>,
}

/// The last words of a failing process, for its task's error message.
fn with_stderr(what: String, proc: &AgentProcess) -> HandlerError {
    let tail = proc.stderr_tail();
    if tail.is_empty() {
        format!("{what} (no stderr output)").into()
    } else {
        format!("{what}; stderr: {tail}").into()
    }
}

/// At most `max` characters of `line`, for error messages.
fn excerpt(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

impl CommandHandler {
    pub fn new(options: CommandOptions) -> Result<CommandHandler, CommandError> {
        let program = options.argv.first().ok_or(CommandError::Empty)?;
        if !on_path(program) {
            return Err(CommandError::NotFound(program.clone()));
        }
        Ok(CommandHandler {
            slots: Arc::new(Semaphore::new(options.processes.max(1))),
            options,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// An idle live process, or a new one.
    fn take_process(&self) -> Result<AgentProcess, HandlerError> {
        loop {
            let next = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match next {
                Some(mut p) => {
                    if !p.has_exited() {
                        return Ok(p);
                    }
                }
                None => break,
            }
        }
        let env = process::allowed_env(std::env::vars_os(), &self.options.env);
        let p = AgentProcess::spawn(&self.options.argv, &env).map_err(|e| {
            HandlerError::from(format!(
                "could not start the agent command {:?}: {e}",
                self.options.argv.join(" ")
            ))
        })?;
        tracing::info!(pid = p.pid(), command = %self.options.argv.join(" "), "started an agent process");
        Ok(p)
    }

    fn give_back(&self, p: AgentProcess) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }

    /// Runs one task on `proc`; the flag says whether the process can serve another.
    async fn converse(
        &self,
        proc: &mut AgentProcess,
        input: &HandlerInput,
    ) -> (Result<HandlerOutput, HandlerError>, bool) {
        let message = input.last_user_message();
        let line = TaskLine {
            kind: "task",
            task_id: &input.task_id,
            context_id: &input.context_id,
            caller: input.caller.as_deref(),
            skill_id: input.skill.as_deref(),
            text: message.map(|m| m.text()).unwrap_or_default(),
            message,
            history: &input.history,
            references: &input.references,
            context_history: &input.context_history,
        };
        if let Err(e) = proc.send(&line).await {
            let status = proc.wait_exit(Duration::from_secs(1)).await;
            let what = match status {
                Some(s) => format!("the agent process exited ({s}) before taking the task"),
                None => format!("could not hand the task to the agent process: {e}"),
            };
            return (Err(with_stderr(what, proc)), false);
        }
        let mut stream: Option<ArtifactStream> = None;
        let mut cancel_deadline: Option<tokio::time::Instant> = None;
        loop {
            let read = tokio::select! {
                r = proc.read_line(self.options.max_line_bytes) => r,
                _ = input.cancel.cancelled(), if cancel_deadline.is_none() => {
                    cancel_deadline = Some(tokio::time::Instant::now() + self.options.cancel_grace);
                    let cancel = CancelLine { kind: "cancel", task_id: &input.task_id };
                    if proc.send(&cancel).await.is_err() {
                        return (Err("canceled".into()), false);
                    }
                    continue;
                }
                _ = sleep_until(cancel_deadline) => {
                    tracing::info!(task_id = %input.task_id, pid = proc.pid(), "the agent process did not stop after a cancel line; killing it");
                    return (Err("canceled; the agent process did not stop in time and was killed".into()), false);
                }
            };
            let line = match read {
                Ok(Some(line)) => line,
                Ok(None) => {
                    let status = proc.wait_exit(Duration::from_secs(1)).await;
                    let status = status.map_or("still running".to_string(), |s| s.to_string());
                    let what = format!(
                        "the agent process closed its output ({status}) before its final line"
                    );
                    return (Err(with_stderr(what, proc)), false);
                }
                Err(e) => return (Err(with_stderr(e.to_string(), proc)), false),
            };
            if line.trim().is_empty() {
                continue;
            }
            let reply = match Reply::parse(&line) {
                Ok(r) => r,
                Err(why) => {
                    let what = format!(
                        "the agent process printed a line that is not a protocol message ({why}): {:?}",
                        excerpt(&line, 200)
                    );
                    return (Err(with_stderr(what, proc)), false);
                }
            };
            let emitted = match reply {
                Reply::Status { text } => input.emitter.status(text).await,
                Reply::Chunk { text, parts } => {
                    stream
                        .get_or_insert_with(|| input.emitter.stream("result"))
                        .send(parts_of(text, parts))
                        .await
                }
                final_line => {
                    // A process that answered after a cancel line is still usable.
                    return (finish(final_line, stream).await, true);
                }
            };
            match emitted {
                Ok(()) => {}
                // Output after a cancel is dropped while the process winds down.
                Err(_) if input.cancel.is_cancelled() => {}
                // The task cannot take more output (too large, changed under us): the
                // process is mid-task, so it is not reused.
                Err(e) => return (Err(e), false),
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Maps a final line to the handler's output, closing a streamed artifact first.
async fn finish(
    reply: Reply,
    stream: Option<ArtifactStream>,
) -> Result<HandlerOutput, HandlerError> {
    if let Reply::Result { text, parts, data } = reply {
        let mut parts = parts_of(text, parts);
        if let Some(data) = data {
            parts.push(bindu_schemas::Part::data(data));
        }
        return match stream {
            Some(s) => {
                s.finish(parts).await?;
                Ok(HandlerOutput::Streamed)
            }
            None if parts.is_empty() => {
                Err("the agent process's result has no text, parts or data".into())
            }
            None => Ok(HandlerOutput::Parts(parts)),
        };
    }
    if let Some(s) = stream {
        s.finish(Vec::new()).await?;
    }
    match reply {
        Reply::InputRequired { prompt } => Ok(HandlerOutput::InputRequired(prompt)),
        Reply::AuthRequired { prompt } => Ok(HandlerOutput::AuthRequired(prompt)),
        Reply::Rejected { reason } => Ok(HandlerOutput::Rejected(reason)),
        Reply::Error { message } => Err(message.into()),
        Reply::Status { .. } | Reply::Chunk { .. } | Reply::Result { .. } => {
            Err("internal: not a final line".into())
        }
    }
}

#[async_trait]
impl Handler for CommandHandler {
    async fn handle(&self, input: HandlerInput) -> Result<HandlerOutput, HandlerError> {
        let slot = tokio::select! {
            s = self.slots.clone().acquire_owned() => s.map_err(|_| HandlerError::from("the command handler is closed"))?,
            _ = input.cancel.cancelled() => return Err("canceled while waiting for a free agent process".into()),
        };
        let mut proc = self.take_process()?;
        proc.clear_stderr();
        let (result, healthy) = self.converse(&mut proc, &input).await;
        if healthy {
            self.give_back(proc);
        } else {
            tracing::info!(task_id = %input.task_id, pid = proc.pid(), "replacing the agent process");
            proc.kill();
            drop(proc);
        }
        drop(slot);
        result
    }
}
