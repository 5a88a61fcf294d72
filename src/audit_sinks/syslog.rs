//! Syslog over TCP, or over TLS (RFC 5425): each audit event one RFC 5424 message, framed by
//! octet counting (RFC 6587 §3.4.1: `LEN SP MSG`), its MSG the event's JSON (the NDJSON line).
//!
//! Syslog has no acknowledgements of its own: a batch counts as delivered once the receiver's
//! TCP has acknowledged every byte of it (so a connection a firewall dropped, or a receiver
//! that is gone, fails the batch instead of swallowing it), and the receiver has not reset the
//! connection since. What the receiver's kernel took but its process never read (it crashed
//! right then) can still be lost. A connection idle for 30 s is replaced before use, one the
//! receiver closed is noticed before writing, and a failed batch is sent whole again.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{DeliveryError, Encoded};
use crate::domain::audit::{AuditEvent, Outcome};

/// RFC 5424 facility 13, "log audit".
const FACILITY_LOG_AUDIT: u8 = 13;

/// How long connecting, or writing one batch, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the messages go: `tcp://HOST:PORT` or `tls://HOST:PORT`.
#[derive(Clone)]
pub struct SyslogTarget {
    pub host: String,
    pub port: u16,
    /// `Some`: over TLS, the server's certificate checked against these roots for `host`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "tls" } else { "tcp" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl SyslogTarget {
    /// Parses `tcp://HOST:PORT` or `tls://HOST:PORT` (`tls` with `roots`).
    pub fn parse(url: &str, roots: &Arc<rustls::ClientConfig>) -> Result<SyslogTarget, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("tcp://") {
            (None, rest)
        } else if let Some(rest) = url.strip_prefix("tls://") {
            (Some(roots.clone()), rest)
        } else {
            return Err(format!("{url:?} is not tcp://HOST:PORT or tls://HOST:PORT"));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?} names no port (tcp://HOST:PORT)"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url:?}: {port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        Ok(SyslogTarget {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// A connection idle this long is replaced before the next batch: a firewall or NAT may have
/// dropped it without a word, and a batch written into it would only fail later.
const IDLE_RECONNECT: Duration = Duration::from_secs(30);

/// An open connection: the stream (TCP or TLS over it), the TCP socket under it, when it was
/// last used.
struct Connection {
    stream: Box<dyn Stream>,
    socket: std::os::fd::RawFd,
    used: tokio::time::Instant,
}

/// A syslog sink: its target and, between batches, its open connection.
pub struct Syslog {
    target: SyslogTarget,
    hostname: String,
    connection: Option<Connection>,
}

impl Syslog {
    pub fn new(target: SyslogTarget) -> Syslog {
        Syslog {
            target,
            hostname: local_hostname(),
            connection: None,
        }
    }

    /// Where the messages go, for the sink's name.
    pub fn destination(&self) -> String {
        format!("{:?}", self.target)
    }

    /// Writes `events` as one batch of framed messages, and waits until the receiver's TCP
    /// has acknowledged every byte: only then is the batch delivered.
    pub async fn deliver(&mut self, events: &[Encoded]) -> Result<(), DeliveryError> {
        let mut batch = Vec::new();
        for encoded in events {
            frame(&message(&encoded.event, &encoded.json, &self.hostname), &mut batch);
        }
        // Taken out while in use: a delivery cut short (by its deadline) drops the connection
        // with its half-written batch, instead of leaving it for the next batch to follow.
        let mut reusable = self.connection.take();
        if let Some(connection) = &mut reusable {
            if connection.used.elapsed() > IDLE_RECONNECT || !still_open(connection.stream.as_mut()) {
                reusable = None;
            }
        }
        let mut connection = match reusable {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let delivered = tokio::time::timeout(IO_TIMEOUT, async {
            connection.stream.write_all(&batch).await?;
            connection.stream.flush().await?;
            acknowledged(connection.socket).await?;
            // A receiver that reset the connection instead of reading: not delivered.
            if still_open(connection.stream.as_mut()) {
                Ok(())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            }
        })
        .await;
        match delivered {
            Ok(Ok(())) => {
                connection.used = tokio::time::Instant::now();
                self.connection = Some(connection);
                Ok(())
            }
            Ok(Err(error)) => Err(DeliveryError::Io(error)),
            Err(_) => Err(DeliveryError::Timeout),
        }
    }

    async fn connect(&self) -> Result<Connection, DeliveryError> {
        use std::os::fd::AsRawFd;
        let tcp = self.connect_tcp().await?;
        let socket = tcp.as_raw_fd();
        let stream = self.secure(tcp).await?;
        Ok(Connection {
            stream,
            socket,
            used: tokio::time::Instant::now(),
        })
    }

    async fn connect_tcp(&self) -> Result<TcpStream, DeliveryError> {
        let target = &self.target;
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect((target.host.as_str(), target.port)))
            .await
            .map_err(|_| DeliveryError::Timeout)?
            .map_err(DeliveryError::Io)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// `tcp` as the target has it: as is, or under TLS.
    async fn secure(&self, tcp: TcpStream) -> Result<Box<dyn Stream>, DeliveryError> {
        let target = &self.target;
        let Some(tls) = &target.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| DeliveryError::Tls(format!("{:?} is not a server name", target.host)))?;
        let stream = tokio::time::timeout(
            IO_TIMEOUT,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| DeliveryError::Timeout)?
        .map_err(|e| DeliveryError::Tls(e.to_string()))?;
        Ok(Box::new(stream))
    }
}

/// Waits until the peer's TCP has acknowledged everything written to `socket` (Linux's
/// `SIOCOUTQ`: bytes sent but not acknowledged, or not sent yet).
async fn acknowledged(socket: std::os::fd::RawFd) -> std::io::Result<()> {
    loop {
        if unacknowledged(socket)? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(target_os = "linux")]
fn unacknowledged(socket: std::os::fd::RawFd) -> std::io::Result<libc::c_int> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer it is given; `socket` is
    // the open TCP socket of a connection this sink holds.
    let status = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
    if status < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(queued)
}

/// Elsewhere the kernel does not say: written counts as delivered.
#[cfg(not(target_os = "linux"))]
fn unacknowledged(_socket: std::os::fd::RawFd) -> std::io::Result<libc::c_int> {
    Ok(0)
}

/// Whether the receiver has not closed the connection: it never sends anything, so anything
/// readable now is its end of the stream (or an error, or a TLS alert saying so).
fn still_open(connection: &mut dyn Stream) -> bool {
    use futures_util::FutureExt;
    let mut byte = [0u8; 1];
    match connection.read(&mut byte).now_or_never() {
        None => true,
        Some(Ok(n)) => n > 0,
        Some(Err(_)) => false,
    }
}

/// `message` framed by octet counting: its length in bytes, a space, the message.
pub fn frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// The RFC 5424 message of `event`, whose JSON is `json`:
/// `<PRI>1 TIMESTAMP HOSTNAME keyward - ACTION - JSON`, facility "log audit", severity
/// informational for a success and notice for a refusal or failure.
pub fn message(event: &AuditEvent, json: &str, hostname: &str) -> String {
    let severity = match event.outcome {
        Outcome::Success => 6,
        Outcome::Denied | Outcome::Failure => 5,
    };
    let pri = FACILITY_LOG_AUDIT * 8 + severity;
    let timestamp = event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!(
        "<{pri}>1 {timestamp} {hostname} keyward - {msgid} - {json}",
        msgid = header_field(&event.action, 32),
    )
}

/// `text` as an RFC 5424 header field: printable US-ASCII without spaces, at most `max`
/// characters; `-` (nil) when nothing is left.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// This machine's name for the HOSTNAME field.
fn local_hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return "-".to_owned();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    header_field(&String::from_utf8_lossy(&buffer[..end]), 255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::ActorKind;
    use chrono::TimeZone;

    fn event(outcome: Outcome) -> AuditEvent {
        AuditEvent {
            id: 7,
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 12, 4, 19, 0, 0).unwrap(),
            tenant_id: None,
            actor_kind: ActorKind::System,
            actor_id: "test".into(),
            action: "key.created".into(),
            target_kind: None,
            target_id: None,
            outcome,
            request_id: None,
            ip: None,
            user_agent: None,
            details: serde_json::json!({"name": "é"}),
            prev_hash: None,
            hash: "00".repeat(32),
        }
    }

    #[test]
    fn a_success_is_an_informational_log_audit_message_with_the_event_as_json() {
        let json = serde_json::to_string(&event(Outcome::Success)).unwrap();
        let text = message(&event(Outcome::Success), &json, "host");
        assert_eq!(
            text,
            format!("<110>1 2026-12-04T19:00:00.000000Z host keyward - key.created - {json}")
        );
    }

    #[test]
    fn a_refusal_is_a_notice() {
        assert!(message(&event(Outcome::Denied), "{}", "host").starts_with("<109>1 "));
    }

    #[test]
    fn a_frame_counts_the_bytes_not_the_characters() {
        let mut out = Vec::new();
        frame("é", &mut out);
        assert_eq!(out, b"2 \xc3\xa9");
    }

    #[test]
    fn header_fields_lose_spaces_and_control_characters_and_nil_when_empty() {
        assert_eq!(header_field("a b\nc", 32), "abc");
        assert_eq!(header_field(" ", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
    }

    #[test]
    fn targets_are_tcp_or_tls_with_a_port() {
        let roots = Arc::new(super::super::tls::client_config(None).unwrap());
        let plain = SyslogTarget::parse("tcp://127.0.0.1:514", &roots).unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.tls.is_none()),
            ("127.0.0.1", 514, true)
        );
        assert!(SyslogTarget::parse("tls://[::1]:6514", &roots).unwrap().tls.is_some());
        for bad in ["udp://h:514", "tcp://h", "tcp://h:0", "tcp://:514", "tcp://h:x"] {
            assert!(SyslogTarget::parse(bad, &roots).is_err(), "{bad}");
        }
    }
}
