//! HTTPS and mutual TLS end to end. Every certificate is generated here at run time (rcgen):
//! a test CA, a server leaf for 127.0.0.1, client leaves naming DIDs, and the bad ones (another
//! CA, expired, server-only key usage, no DID). Nothing secret is committed.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bindu::engine::config::MtlsMode;
use bindu::engine::identity::Identity;
use bindu_ingress::tls::TlsError;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::AlertDescription;
use serde_json::{json, Value};
use support::hydra::{fake_hydra, now};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf signed by `ca`: PEM of the certificate followed by its PKCS#8 key.
struct Leaf {
    cert: String,
    key: String,
}

impl Leaf {
    fn identity(&self) -> Vec<u8> {
        format!("{}{}", self.cert, self.key).into_bytes()
    }
}

enum Usage {
    Client,
    Server,
}

fn leaf(ca: &Ca, uri_san: Option<&str>, cn: &str, usage: Usage, expired: bool) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(uri) = uri_san {
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
    }
    params.extended_key_usages = match usage {
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Server => {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params
                .subject_alt_names
                .push(SanType::DnsName("localhost".try_into().unwrap()));
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        }
    };
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn client_leaf(ca: &Ca, did: &str) -> Leaf {
    leaf(ca, Some(did), "agent", Usage::Client, false)
}

struct Pki {
    ca: Ca,
    dir: PathBuf,
}

/// A key file readable by its owner only (the server refuses any other).
fn private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn pki() -> Pki {
    let dir = std::env::temp_dir().join(format!("bindu-mtls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = ca("bindu test CA");
    let server = leaf(&ca, None, "localhost", Usage::Server, false);
    std::fs::write(dir.join("tls_cert.pem"), &server.cert).unwrap();
    std::fs::write(dir.join("tls_key.pem"), &server.key).unwrap();
    private(&dir.join("tls_key.pem"));
    std::fs::write(dir.join("ca_bundle.pem"), &ca.pem).unwrap();
    Pki { ca, dir }
}

async fn start(dir: &Path, settings: &[(&str, &str)]) -> bindu::Server {
    let mut all = vec![
        ("server.host", "127.0.0.1"),
        ("server.port", "0"),
        ("identity.dir", dir.to_str().unwrap()),
        ("mtls.enabled", "true"),
    ];
    all.extend_from_slice(settings);
    support::start_echo(&all).await
}

fn https(ca_pem: &str, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(support::TIMEOUT);
    if let Some(leaf) = identity {
        b = b.identity(reqwest::Identity::from_pem(&leaf.identity()).unwrap());
    }
    b.build().unwrap()
}

fn send_body(text: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send",
           "params": {"message": {"role": "user", "messageId": uuid::Uuid::new_v4().to_string(),
                                  "parts": [{"kind": "text", "text": text}]},
                      "configuration": {"blocking": true}}})
    .to_string()
}

/// A TLS connection to `server` trusting `ca_pem`, presenting `identity` (a client
/// certificate and its key) if any, then `GET /health`: `Ok` when the server answered 200,
/// else the TLS error it ended the connection with. Done with rustls directly: in TLS 1.3
/// the server refuses a client certificate after the client's side of the handshake is
/// done, and its alert is read deterministically here, while an HTTP client may report only
/// that the connection closed.
async fn handshake(
    server: &bindu::Server,
    ca_pem: &str,
    identity: Option<Leaf>,
) -> Result<(), rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tls_error = |e: std::io::Error| -> rustls::Error {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("not a TLS error: {e:?}"))
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = support::within("the TLS handshake", connector.connect(name, tcp))
        .await
        .map_err(tls_error)?;
    tls.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .map_err(tls_error)?;
    let mut response = Vec::new();
    let read = support::within("the answer", tls.read_to_end(&mut response)).await;
    if response.starts_with(b"HTTP/1.1 200") {
        return Ok(());
    }
    read.map_err(tls_error)?;
    panic!(
        "neither an answer nor a TLS error: {}",
        String::from_utf8_lossy(&response)
    );
}

/// The card `server` shows `client`.
async fn card(client: &reqwest::Client, server: &bindu::Server) -> Value {
    let url = format!(
        "https://{}/.well-known/agent-card.json",
        server.local_addr()
    );
    support::get_json(client, url).await
}

/// Sends `text` to `server` as `client`, with no header of its own; the status and JSON body.
async fn send_as(client: &reqwest::Client, server: &bindu::Server, text: &str) -> (u16, Value) {
    post(client, server, &[], send_body(text)).await.unwrap()
}

async fn post(
    client: &reqwest::Client,
    server: &bindu::Server,
    headers: &[(&str, String)],
    body: String,
) -> Result<(u16, Value), reqwest::Error> {
    let mut req = client
        .post(format!("https://{}/", server.local_addr()))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

const ALICE: &str = "did:bindu:alice_at_example_com:caller:4c3b5a2e-0000-4000-8000-000000000001";
const BOB: &str = "did:bindu:bob_at_example_com:caller:4c3b5a2e-0000-4000-8000-000000000002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_mode_the_certificate_is_the_caller() {
    let pki = pki();
    let server = start(&pki.dir, &[("mtls.mode", "mtls")]).await;
    assert!(server.base_url().starts_with("https://"));
    let alice = https(&pki.ca.pem, Some(&client_leaf(&pki.ca, ALICE)));
    let bob = https(&pki.ca.pem, Some(&client_leaf(&pki.ca, BOB)));

    let (status, resp) = send_as(&alice, &server, "hi").await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["result"]["status"]["state"], "completed", "{resp}");
    let task_id = resp["result"]["id"].as_str().unwrap().to_string();

    // The task belongs to Alice's DID: Bob gets "not found", Alice gets it.
    let get = json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": task_id}})
        .to_string();
    let (_, resp) = post(&bob, &server, &[], get.clone()).await.unwrap();
    assert_eq!(resp["error"]["code"], -32001, "{resp}");
    let (_, resp) = post(&alice, &server, &[], get).await.unwrap();
    assert_eq!(resp["result"]["id"], task_id.as_str(), "{resp}");

    // The card says so.
    let card: Value = card(&alice, &server).await;
    assert_eq!(
        card["securitySchemes"]["mtls"]["type"], "mutualTLS",
        "{card}"
    );
    assert_eq!(card["security"], json!([{"mtls": []}]), "{card}");
    assert!(card["url"].as_str().unwrap().starts_with("https://"));

    // A subject CN naming the DID is the fallback when no URI SAN does.
    let cn_only = leaf(&pki.ca, None, ALICE, Usage::Client, false);
    let (status, resp) = send_as(&https(&pki.ca.pem, Some(&cn_only)), &server, "cn").await;
    assert_eq!(status, 200, "{resp}");

    // A certificate without a DID is refused with a reason.
    let anonymous = leaf(
        &pki.ca,
        Some("https://example.invalid/x"),
        "plain",
        Usage::Client,
        false,
    );
    let (status, resp) = send_as(&https(&pki.ca.pem, Some(&anonymous)), &server, "who").await;
    assert_eq!(status, 403);
    assert_eq!(resp["reason"], "certificate_lacks_did", "{resp}");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_certificates_fail_the_handshake() {
    let pki = pki();
    let server = start(&pki.dir, &[("mtls.mode", "mtls")]).await;
    let health = |client: reqwest::Client| {
        let url = format!("https://{}/health", server.local_addr());
        async move { client.get(url).send().await }
    };
    // With a client certificate required, even public paths need one. Each refusal is the
    // server's TLS alert naming the reason, not just any failed request.
    let refused = |identity: Option<Leaf>| handshake(&server, &pki.ca.pem, identity);
    let alert = |a| Err(rustls::Error::AlertReceived(a));
    assert_eq!(
        refused(None).await,
        alert(AlertDescription::CertificateRequired),
        "no certificate"
    );
    let other = ca("some other CA");
    assert_eq!(
        refused(Some(client_leaf(&other, ALICE))).await,
        alert(AlertDescription::UnknownCA),
        "a certificate from another CA"
    );
    assert_eq!(
        refused(Some(leaf(&pki.ca, Some(ALICE), "x", Usage::Client, true))).await,
        alert(AlertDescription::CertificateExpired),
        "an expired certificate"
    );
    assert_eq!(
        refused(Some(leaf(&pki.ca, Some(ALICE), "x", Usage::Server, false))).await,
        alert(AlertDescription::UnsupportedCertificate),
        "a server-only certificate"
    );
    // The same handshake with a good certificate gets its answer.
    assert_eq!(
        refused(Some(client_leaf(&pki.ca, ALICE))).await,
        Ok(()),
        "a good certificate"
    );
    // The server keeps serving good clients.
    let good = health(https(&pki.ca.pem, Some(&client_leaf(&pki.ca, ALICE))))
        .await
        .unwrap();
    assert_eq!(good.status().as_u16(), 200);
    // Plain HTTP to the HTTPS port is not answered as HTTP.
    let plain = support::client()
        .get(format!("http://{}/health", server.local_addr()))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_certificates_leave_public_paths_open_and_allow_lists_apply() {
    let pki = pki();
    let server = start(
        &pki.dir,
        &[
            ("mtls.mode", "mtls"),
            ("mtls.require_client_cert", "false"),
            ("auth.allowed_dids", ALICE),
        ],
    )
    .await;
    let nobody = https(&pki.ca.pem, None);
    let r = nobody
        .get(format!("https://{}/health", server.local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, resp) = send_as(&nobody, &server, "x").await;
    assert_eq!(status, 403);
    assert_eq!(resp["reason"], "client_certificate_required", "{resp}");
    let bob = https(&pki.ca.pem, Some(&client_leaf(&pki.ca, BOB)));
    let (status, resp) = send_as(&bob, &server, "x").await;
    assert_eq!(status, 403);
    assert_eq!(resp["error"], "DID not admitted", "{resp}");
    let alice = https(&pki.ca.pem, Some(&client_leaf(&pki.ca, ALICE)));
    let (status, _) = send_as(&alice, &server, "x").await;
    assert_eq!(status, 200);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_mode_binds_the_certificate_to_the_token() {
    let pki = pki();
    let (hydra, hydra_addr) = fake_hydra().await;
    let server = start(
        &pki.dir,
        &[
            ("mtls.mode", "hybrid"),
            ("mtls.require_client_cert", "false"),
            ("auth.enabled", "true"),
            ("hydra.admin_url", &format!("http://{hydra_addr}")),
        ],
    )
    .await;
    // Alice is a DID client: token, registered key, signed requests.
    let alice_key = Arc::new(Identity::new(
        ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        "alice@example.com",
        "caller",
    ));
    crate::support::hydra::register_key(&hydra, ALICE, &alice_key);
    hydra.token(
        "alice-token",
        ALICE,
        json!(now() + 3600),
        "agent:read agent:write",
    );

    let signed = |body: &str| {
        let client = bindu::client::Client::new("https://unused/")
            .unwrap()
            .with_signer(alice_key.clone(), ALICE);
        let mut h = client.signature_headers(body);
        h.push(("authorization", "Bearer alice-token".into()));
        h
    };
    let alice_cert = https(&pki.ca.pem, Some(&client_leaf(&pki.ca, ALICE)));
    let body = send_body("hybrid");
    let (status, resp) = post(&alice_cert, &server, &signed(&body), body)
        .await
        .unwrap();
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["result"]["status"]["state"], "completed", "{resp}");

    // Alice's token over Bob's certificate: refused.
    let bob_cert = https(&pki.ca.pem, Some(&client_leaf(&pki.ca, BOB)));
    let body = send_body("stolen token");
    let (status, resp) = post(&bob_cert, &server, &signed(&body), body)
        .await
        .unwrap();
    assert_eq!(status, 403, "{resp}");
    assert_eq!(resp["reason"], "certificate_did_mismatch", "{resp}");

    // A valid token without any certificate: refused before the token is looked at.
    let before = hydra
        .introspections
        .load(std::sync::atomic::Ordering::SeqCst);
    let body = send_body("no cert");
    let (status, resp) = post(&https(&pki.ca.pem, None), &server, &signed(&body), body)
        .await
        .unwrap();
    assert_eq!(status, 403, "{resp}");
    assert_eq!(resp["reason"], "client_certificate_required", "{resp}");
    assert_eq!(
        hydra
            .introspections
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );

    // A certificate without a token is still a missing token.
    let (status, resp) = send_as(&alice_cert, &server, "no token").await;
    assert_eq!(status, 401, "{resp}");
    assert_eq!(resp["error"]["code"], -32009, "{resp}");

    // The card asks for both, in one requirement.
    let card: Value = card(&alice_cert, &server).await;
    assert_eq!(
        card["security"],
        json!([{"bearer": [], "mtls": []}]),
        "{card}"
    );
    // Each scheme the requirement names is on the card.
    assert_eq!(
        card["securitySchemes"]["mtls"]["type"], "mutualTLS",
        "{card}"
    );
    assert_eq!(
        card["securitySchemes"]["bearer"]["scheme"], "Bearer",
        "{card}"
    );
    // And in A2A 1.0's form, for 1.0 clients reading the same card.
    assert_eq!(
        card["securityRequirements"],
        json!([{"schemes": {"bearer": {"list": []}, "mtls": {"list": []}}}]),
        "{card}"
    );
    assert_eq!(
        card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"], "Bearer",
        "{card}"
    );
    assert!(
        card["securitySchemes"]["mtls"]["mtlsSecurityScheme"].is_object(),
        "{card}"
    );
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_off_serves_https_without_client_certificates() {
    let pki = pki();
    // No CA bundle is needed when client certificates are not used.
    std::fs::remove_file(pki.dir.join("ca_bundle.pem")).unwrap();
    let server = start(&pki.dir, &[("mtls.mode", "off")]).await;
    let client = bindu::client::Client::new(format!("https://{}/", server.local_addr()))
        .unwrap()
        .with_tls(Some(pki.ca.pem.as_bytes()), None)
        .unwrap();
    let (status, resp) = client
        .call(
            "message/send",
            json!({"message": {"role": "user", "messageId": "m-1", "parts": [{"kind": "text", "text": "hi"}]},
                   "configuration": {"blocking": true}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["result"]["status"]["state"], "completed", "{resp}");
    server.shutdown();
}

#[tokio::test]
async fn misconfiguration_is_refused_at_start_with_the_file_named() {
    let pki = pki();
    let err = support::echo_refused(
        &[
            ("server.port", "0"),
            ("identity.dir", pki.dir.to_str().unwrap()),
            ("mtls.enabled", "true"),
            ("mtls.mode", "mtls"),
            ("mtls.cert_file", "/nonexistent/cert.pem"),
        ],
        "a missing certificate file must stop the start",
    )
    .await;
    assert!(
        format!("{err:#}").contains("/nonexistent/cert.pem"),
        "{err:#}"
    );
    // The ingress's own error: the file variant, naming the file.
    let missing = bindu_ingress::tls::server_config(&bindu_ingress::tls::TlsFiles {
        cert: Path::new("/nonexistent/cert.pem"),
        key: &pki.dir.join("tls_key.pem"),
        client_ca: None,
        require_client_cert: false,
    });
    assert!(
        matches!(&missing, Err(TlsError::File { path, .. }) if path == "/nonexistent/cert.pem"),
        "{missing:?}"
    );

    // A key file that is not a key: named, without echoing its content.
    std::fs::write(pki.dir.join("bad_key.pem"), "secret-looking garbage").unwrap();
    private(&pki.dir.join("bad_key.pem"));
    let err = support::echo_refused(
        &[
            ("server.port", "0"),
            ("identity.dir", pki.dir.to_str().unwrap()),
            ("mtls.enabled", "true"),
            ("mtls.mode", "mtls"),
            (
                "mtls.key_file",
                pki.dir.join("bad_key.pem").to_str().unwrap(),
            ),
        ],
        "a bad key must stop the start",
    )
    .await;
    let msg = format!("{err:#}");
    assert!(
        msg.contains("bad_key.pem") && !msg.contains("garbage"),
        "{msg}"
    );
    let bad_key = pki.dir.join("bad_key.pem");
    let refused = bindu_ingress::tls::server_config(&bindu_ingress::tls::TlsFiles {
        cert: &pki.dir.join("tls_cert.pem"),
        key: &bad_key,
        client_ca: None,
        require_client_cert: false,
    });
    assert!(
        matches!(&refused, Err(TlsError::File { path, message })
            if *path == bad_key.display().to_string() && !message.contains("garbage")),
        "{refused:?}"
    );

    // Hybrid needs token auth; mtls excludes it.
    let mut config = bindu::Config::defaults();
    config.mtls.enabled = true;
    config.mtls.mode = MtlsMode::Hybrid;
    let err = config.validate().unwrap_err();
    assert!(err.key.starts_with("mtls.mode"), "{err}");
    assert!(err.message.contains("AUTH__ENABLED=true"), "{err}");
    config.mtls.mode = MtlsMode::Mtls;
    assert!(config.validate().is_ok());
    config.auth.enabled = true;
    config.hydra.admin_url = Some("http://127.0.0.1:9".into());
    let err = config.validate().unwrap_err();
    assert!(err.key.starts_with("mtls.mode"), "{err}");
    assert!(err.message.contains("AUTH__ENABLED=false"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_calls_over_mutual_tls() {
    let pki = pki();
    let server = start(&pki.dir, &[("mtls.mode", "mtls")]).await;
    let alice = client_leaf(&pki.ca, ALICE);
    let (cert, key) = (pki.dir.join("alice.pem"), pki.dir.join("alice.key"));
    std::fs::write(&cert, &alice.cert).unwrap();
    std::fs::write(&key, &alice.key).unwrap();
    let url = format!("https://{}/", server.local_addr());
    let run = |with_cert: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bindu"));
        cmd.args(["call", &url, "message/send", "hello over mTLS", "--ca-file"])
            .arg(pki.dir.join("ca_bundle.pem"))
            .env("BINDU_KEY_DIR", pki.dir.join("cli-keys"))
            .kill_on_drop(true);
        if with_cert {
            cmd.arg("--cert-file")
                .arg(&cert)
                .arg("--key-file")
                .arg(&key);
        }
        async move { support::within("bindu call", cmd.output()).await.unwrap() }
    };
    let out = run(true).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"result\""), "{stdout}");
    // Without the certificate the handshake fails and the CLI says so.
    let out = run(false).await;
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
    // A CA file that holds no certificate is named as such, before any connection.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bindu"))
        .args(["call", &url, "tasks/list", "{}", "--ca-file"])
        .arg(&key)
        .env("BINDU_KEY_DIR", pki.dir.join("cli-keys"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CA bundle"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "never echo the file: {err}");
    server.shutdown();
}
