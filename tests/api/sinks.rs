//! Audit sinks: every event reaches a real rsyslog (RFC 5424 over TCP, octet-counted) and a
//! local HTTPS receiver (signed NDJSON batches), at least once and in order per chain, across
//! restarts of either side and of keyward; one sink being down holds up nothing else.

use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::{free_port, TestApp};
use keyward::config::AppConfig;

const SECRET: &str = "audit-webhook-secret-audit-webhook-secret";

/// Whether `check` holds within 20 s (a sink polls every 20 ms here; a failing one backs off
/// up to 30 s, so tests that bring a receiver back keep the outage short).
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..400 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyward-{name}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every event's id by chain (`None`: the platform's), oldest first, as stored.
async fn stored_chains(pool: &PgPool) -> BTreeMap<Option<String>, Vec<i64>> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as("SELECT tenant_id::text, id FROM audit_events ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut chains: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
    for (chain, id) in rows {
        chains.entry(chain).or_default().push(id);
    }
    chains
}

/// The delivered events' ids by chain, in the order they arrived, duplicates left out (at
/// least once allows them) but order checked: within a chain no event arrives after a later one
/// of its chain had (other than again).
fn delivered_chains(events: &[Value]) -> BTreeMap<Option<String>, Vec<i64>> {
    let mut chains: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
    for event in events {
        let chain = event["tenant_id"].as_str().map(str::to_owned);
        let id = event["id"].as_i64().unwrap();
        let ids = chains.entry(chain).or_default();
        match ids.last() {
            Some(last) if id <= *last => assert!(ids.contains(&id), "event {id} arrived after {last} of its chain"),
            _ => ids.push(id),
        }
    }
    chains
}

/// Some events in two tenants' chains and the platform's.
async fn make_events(app: &TestApp, tag: &str) {
    for slug in ["acme", "globex"] {
        let slug = format!("{slug}-{tag}");
        let tenant = app.tenant(&slug).await;
        app.key(&tenant, json!({"name": "k1"})).await;
        app.key(&tenant, json!({"name": "k2"})).await;
    }
}

// ---- a real rsyslog ---------------------------------------------------------------------

fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Skips visibly where rsyslog is not installed; CI must have it.
fn rsyslogd_or_skip() -> Option<PathBuf> {
    let found = rsyslogd();
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "rsyslog must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: rsyslog is not installed (apt-get install rsyslog)");
    }
    found
}

/// A private rsyslogd on 127.0.0.1:`port` taking octet-counted RFC 5424 over TCP, writing each
/// message as a JSON line (its raw text in `raw`) to `out/messages.jsonl`. Runs as `nobody`
/// when the tests run as root.
struct Rsyslog {
    program: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl Rsyslog {
    async fn start(program: PathBuf) -> Rsyslog {
        let mut rsyslog = Rsyslog {
            program,
            dir: temp_dir("rsyslog"),
            port: free_port(),
            child: None,
        };
        rsyslog.restart().await;
        rsyslog
    }

    async fn restart(&mut self) {
        let dir = self.dir.display();
        std::fs::create_dir_all(self.dir.join("work")).unwrap();
        std::fs::create_dir_all(self.dir.join("out")).unwrap();
        let config = format!(
            r#"global(workDirectory="{dir}/work" processInternalMessages="on" maxMessageSize="64k")
module(load="imtcp")
template(name="raw" type="list" option.jsonf="on") {{
  property(outname="raw" name="rawmsg" format="jsonf")
}}
ruleset(name="fromtcp") {{ action(type="omfile" file="{dir}/out/messages.jsonl" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="fromtcp" supportOctetCountedFraming="on")
action(type="omfile" file="{dir}/out/rsyslogd-internal.log")
"#,
            port = self.port
        );
        std::fs::write(self.dir.join("rsyslog.conf"), config).unwrap();
        let mut command = std::process::Command::new(&self.program);
        command
            .args(["-n", "-iNONE", "-f"])
            .arg(self.dir.join("rsyslog.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::process::CommandExt;
            for entry in walk(&self.dir) {
                std::os::unix::fs::chown(entry, Some(65534), Some(65534)).unwrap();
            }
            command.uid(65534).gid(65534);
        }
        self.child = Some(command.spawn().unwrap());
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = std::fs::read_to_string(self.dir.join("out/rsyslogd-internal.log")).unwrap_or_default();
        panic!("rsyslogd did not listen on {}: {log}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every message written so far, raw.
    fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("out/messages.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["raw"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    /// The events in the messages written so far (each message's MSG).
    fn events(&self) -> Vec<Value> {
        self.messages()
            .iter()
            .map(|raw| serde_json::from_str(raw.splitn(8, ' ').nth(7).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

fn syslog_config(port: u16) -> AppConfig {
    let mut config = TestApp::config();
    config.audit_syslog = Some(format!("tcp://127.0.0.1:{port}"));
    config.audit_sink_poll_ms = 20;
    config
}

#[sqlx::test]
async fn every_event_reaches_rsyslog_as_an_rfc5424_message_with_the_event_as_json(pool: PgPool) {
    let Some(program) = rsyslogd_or_skip() else { return };
    let rsyslog = Rsyslog::start(program).await;
    let app = TestApp::spawn_configured(pool, syslog_config(rsyslog.port), |ctx| ctx).await;

    make_events(&app, "a").await;

    let stored = stored_chains(&app.pool).await;
    assert!(eventually(|| delivered_chains(&rsyslog.events()) == stored).await);
    let first = &rsyslog.messages()[0];
    // <facility 13 (log audit) * 8 + severity 6 (informational)>1 TIMESTAMP HOST keyward - MSGID - MSG
    let header: Vec<&str> = first.splitn(8, ' ').collect();
    assert_eq!(header[0], "<110>1", "{first}");
    assert!(
        header[1].ends_with('Z') && header[1].len() == "2026-12-04T19:00:00.000000Z".len(),
        "{first}"
    );
    assert_eq!((header[3], header[4], header[6]), ("keyward", "-", "-"), "{first}");
    let event: Value = serde_json::from_str(header[7]).unwrap();
    assert_eq!(header[5], event["action"].as_str().unwrap());
    // The event as the export has it, links included, so a SIEM can check the chain.
    let exported = app
        .text("/v1/audit?limit=100", "application/x-ndjson")
        .await
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|e| e["id"] == event["id"])
        .unwrap();
    assert_eq!(event, exported);
}

#[sqlx::test]
async fn rsyslog_gets_every_event_after_it_and_keyward_restart(pool: PgPool) {
    let Some(program) = rsyslogd_or_skip() else { return };
    let mut rsyslog = Rsyslog::start(program).await;
    let app = TestApp::spawn_configured(pool.clone(), syslog_config(rsyslog.port), |ctx| ctx).await;
    make_events(&app, "before").await;
    let before = stored_chains(&app.pool).await;
    assert!(eventually(|| delivered_chains(&rsyslog.events()) == before).await);

    // rsyslog goes away; events keep coming; keyward restarts while it is away.
    rsyslog.stop();
    make_events(&app, "during").await;
    app.stop().await;
    let app = TestApp::spawn_configured(pool, syslog_config(rsyslog.port), |ctx| ctx).await;
    make_events(&app, "after").await;
    rsyslog.restart().await;

    let stored = stored_chains(&app.pool).await;
    assert!(
        eventually(|| delivered_chains(&rsyslog.events()) == stored).await,
        "delivered {:?}\nstored {:?}",
        delivered_chains(&rsyslog.events()),
        stored
    );
}

// ---- a local HTTPS (and TLS) receiver ----------------------------------------------------

/// A certificate authority and a certificate for 127.0.0.1 it signed, as PEM files.
struct Certificates {
    dir: PathBuf,
    ca_file: PathBuf,
    server: rustls::ServerConfig,
}

fn certificates() -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let dir = temp_dir("sink-certs");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    Certificates { dir, ca_file, server }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the HTTPS receiver saw: each request's `Keyward-Signature` and body.
#[derive(Default)]
struct Received {
    batches: Vec<(String, Vec<u8>)>,
    /// While true, every request is answered 503 (and not kept).
    down: bool,
    /// A batch holding this text is answered 413 (and not kept).
    refuse_containing: Option<String>,
    /// TLS handshakes that failed (the client did not trust the certificate).
    handshake_failures: usize,
}

impl Received {
    fn events(&self) -> Vec<Value> {
        self.batches
            .iter()
            .flat_map(|(_, body)| {
                std::str::from_utf8(body)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
            })
            .collect()
    }
}

/// An HTTPS server on 127.0.0.1 keeping every POST.
struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(certificates: &Certificates) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://127.0.0.1:{}/ingest", listener.local_addr().unwrap().port());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server.clone()));
        let received = Arc::new(Mutex::new(Received::default()));
        let kept = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                let kept = kept.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        kept.lock().unwrap().handshake_failures += 1;
                        return;
                    };
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let signature = request
                                .headers()
                                .get("keyward-signature")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let body = request.into_body().collect().await.unwrap().to_bytes().to_vec();
                            let mut received = kept.lock().unwrap();
                            let refused = received
                                .refuse_containing
                                .as_ref()
                                .is_some_and(|text| String::from_utf8_lossy(&body).contains(text.as_str()));
                            let status = match (received.down, refused) {
                                (true, _) => 503,
                                (false, true) => 413,
                                (false, false) => 200,
                            };
                            if status == 200 {
                                received.batches.push((signature, body));
                            }
                            hyper::Response::builder()
                                .status(status)
                                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Receiver { url, received, task }
    }

    fn events(&self) -> Vec<Value> {
        self.received.lock().unwrap().events()
    }

    fn set_down(&self, down: bool) {
        self.received.lock().unwrap().down = down;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn webhook_config(receiver: &Receiver, certificates: &Certificates) -> AppConfig {
    let mut config = TestApp::config();
    config.audit_webhook_url = Some(receiver.url.clone());
    config.audit_webhook_secret = Some(SecretString::from(SECRET.to_owned()));
    config.audit_sink_ca_file = Some(certificates.ca_file.clone());
    config.audit_sink_poll_ms = 20;
    config
}

fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[sqlx::test]
async fn the_https_sink_receives_every_event_in_signed_ndjson_batches_one_chain_each(pool: PgPool) {
    let certificates = certificates();
    let receiver = Receiver::start(&certificates).await;
    let app = TestApp::spawn_configured(pool, webhook_config(&receiver, &certificates), |ctx| ctx).await;

    make_events(&app, "a").await;

    let stored = stored_chains(&app.pool).await;
    assert!(eventually(|| delivered_chains(&receiver.events()) == stored).await);
    let now = app.clock().now().timestamp();
    for (signature, body) in &receiver.received.lock().unwrap().batches {
        // Keyward-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .unwrap_or_else(|| panic!("{signature:?}"));
        let signed = [t.as_bytes(), b".", body].concat();
        assert_eq!(v1, hmac_hex(SECRET.as_bytes(), &signed));
        assert!((now - t.parse::<i64>().unwrap()).abs() < 60);
        let chains: std::collections::HashSet<String> = std::str::from_utf8(body)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["tenant_id"].to_string())
            .collect();
        assert_eq!(chains.len(), 1, "a batch holds one chain's events");
    }
}

#[sqlx::test]
async fn an_https_receiver_that_was_down_gets_everything_once_back_across_a_keyward_restart(pool: PgPool) {
    let certificates = certificates();
    let receiver = Receiver::start(&certificates).await;
    receiver.set_down(true);
    let app = TestApp::spawn_configured(pool.clone(), webhook_config(&receiver, &certificates), |ctx| ctx).await;
    make_events(&app, "before").await;
    app.stop().await;

    let app = TestApp::spawn_configured(pool, webhook_config(&receiver, &certificates), |ctx| ctx).await;
    make_events(&app, "after").await;
    receiver.set_down(false);

    let stored = stored_chains(&app.pool).await;
    assert!(eventually(|| delivered_chains(&receiver.events()) == stored).await);
}

/// The cursors of the sinks whose names start with `kind` (`syslog`, `webhook`).
async fn cursors(pool: &PgPool, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_sink_cursors WHERE sink LIKE $1 || '-%'")
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_sink_that_hangs_holds_up_neither_changes_nor_verify_nor_the_other_sink(pool: PgPool) {
    let certificates = certificates();
    let receiver = Receiver::start(&certificates).await;
    // A syslog receiver that takes connections and never answers the TLS handshake.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((tcp, _)) = black_hole.accept().await {
            connections.push(tcp);
        }
    });
    let mut config = webhook_config(&receiver, &certificates);
    config.audit_syslog = Some(format!("tls://127.0.0.1:{port}"));
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;

    let tenant = app.tenant("acme").await;
    let (_, token) = app.key(&tenant, json!({"name": "k"})).await;
    assert_eq!(app.verify(&token, &[]).await["code"], "VALID");

    let stored = stored_chains(&app.pool).await;
    assert!(eventually(|| delivered_chains(&receiver.events()) == stored).await);
    assert_eq!(cursors(&app.pool, "syslog").await, 0, "nothing reached the syslog sink");
    held.abort();
}

#[sqlx::test]
async fn a_chain_whose_batch_is_refused_holds_up_no_other_chain(pool: PgPool) {
    let certificates = certificates();
    let receiver = Receiver::start(&certificates).await;
    let app = TestApp::spawn_configured(pool, webhook_config(&receiver, &certificates), |ctx| ctx).await;
    let refused = app.tenant("refused").await;
    receiver.received.lock().unwrap().refuse_containing = Some(refused.clone());

    make_events(&app, "a").await;

    let mut stored = stored_chains(&app.pool).await;
    stored.remove(&Some(refused));
    assert!(eventually(|| delivered_chains(&receiver.events()) == stored).await);
}

#[sqlx::test]
async fn two_replicas_deliver_each_event_once(pool: PgPool) {
    let certificates = certificates();
    let receiver = Receiver::start(&certificates).await;
    let one = TestApp::spawn_configured(pool.clone(), webhook_config(&receiver, &certificates), |ctx| ctx).await;
    let two = TestApp::spawn_configured(pool, webhook_config(&receiver, &certificates), |ctx| ctx).await;

    make_events(&one, "one").await;
    make_events(&two, "two").await;

    let stored = stored_chains(&one.pool).await;
    assert!(eventually(|| delivered_chains(&receiver.events()) == stored).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids: Vec<i64> = receiver.events().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        ids.len(),
        unique.len(),
        "one replica at a time delivers: no event twice"
    );
}

#[sqlx::test]
async fn syslog_over_tls_reaches_a_receiver_with_a_trusted_certificate(pool: PgPool) {
    let certificates = certificates();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server.clone()));
    let bytes = Arc::new(Mutex::new(Vec::<u8>::new()));
    let kept = bytes.clone();
    let task = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = tls.read(&mut buffer).await {
            if n == 0 {
                return;
            }
            kept.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    let mut config = TestApp::config();
    config.audit_syslog = Some(format!("tls://127.0.0.1:{port}"));
    config.audit_sink_ca_file = Some(certificates.ca_file.clone());
    config.audit_sink_poll_ms = 20;
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;

    make_events(&app, "a").await;

    let stored = stored_chains(&app.pool).await;
    let events = || {
        // Octet counting: LEN SP MSG, one after the other.
        let data = bytes.lock().unwrap().clone();
        let mut events = Vec::new();
        let mut rest = &data[..];
        while let Some(space) = rest.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&rest[..space]).unwrap().parse().unwrap();
            if rest.len() < space + 1 + len {
                break;
            }
            let message = std::str::from_utf8(&rest[space + 1..space + 1 + len]).unwrap();
            events.push(serde_json::from_str::<Value>(message.splitn(8, ' ').nth(7).unwrap()).unwrap());
            rest = &rest[space + 1 + len..];
        }
        events
    };
    assert!(eventually(|| delivered_chains(&events()) == stored).await);
    task.abort();
}

#[sqlx::test]
async fn a_receiver_whose_certificate_is_not_trusted_gets_nothing(pool: PgPool) {
    let certificates = certificates();
    let receiver = Receiver::start(&certificates).await;
    let mut config = webhook_config(&receiver, &certificates);
    config.audit_sink_ca_file = None;
    let app = TestApp::spawn_configured(pool, config, |ctx| ctx).await;

    make_events(&app, "a").await;

    assert!(eventually(|| receiver.received.lock().unwrap().handshake_failures > 0).await);
    assert!(receiver.events().is_empty());
    assert_eq!(cursors(&app.pool, "webhook").await, 0);
}

#[test]
fn a_webhook_without_a_secret_or_with_a_short_one_or_over_http_is_refused_at_start() {
    let build = |url: &str, secret: Option<&str>| {
        let mut config = TestApp::config();
        config.audit_webhook_url = Some(url.to_owned());
        config.audit_webhook_secret = secret.map(|s| SecretString::from(s.to_owned()));
        keyward::audit_sinks::sinks(&config.audit_sinks())
            .map(|_| ())
            .unwrap_err()
    };
    assert!(build("https://siem.example/in", None).contains("KEYWARD_AUDIT_WEBHOOK_SECRET"));
    assert!(build("https://siem.example/in", Some("short")).contains("at least 32"));
    assert!(build("http://siem.example/in", Some(SECRET)).contains("https"));
    let error = build("https://siem.example/in", Some("short-but-secret"));
    assert!(!error.contains("short-but-secret"), "{error}");
}
