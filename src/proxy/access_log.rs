//! The access log: one line per request, JSON or text, written by a thread of its own.
//!
//! A worker formats the line when the request ends and hands it to a bounded queue; it never
//! waits for the output. When the queue is full (stdout is slower than the traffic, or nobody
//! reads the pipe), the line is dropped and counted (`vane_access_log_dropped_total`), so a
//! stalled log can never stall the proxy. The writer batches whole lines into one write, so
//! they do not interleave with vane's other log lines on the same stdout.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::warn;

/// Bytes of lines waiting for the writer at most; beyond it lines are dropped. At a few hundred
/// bytes a line, that is some ten thousand lines of slack.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Lines waiting at most (the channel's own bound; the byte bound is usually reached first).
const QUEUE_LINES: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// ingress-nginx's `upstreaminfo` layout, extended (see the README's Access log section).
    Text,
}

/// The handle workers log through. Cloning shares the queue.
#[derive(Clone, Debug)]
pub struct AccessLog {
    format: Format,
    queue: Arc<Queue>,
}

#[derive(Debug)]
struct Queue {
    lines: SyncSender<String>,
    counts: Arc<Counts>,
}

/// The queue's accounting, which outlives the senders (the writer stops when they are gone).
#[derive(Debug, Default)]
pub struct Counts {
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
}

impl Counts {
    /// Lines dropped because the queue was full or the output failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread; [`Writer::finish`] waits for it to write what is queued.
pub struct Writer(JoinHandle<()>);

impl Writer {
    /// Waits until every handle is gone and the queue is written out.
    pub fn finish(self) {
        let _ = self.0.join();
    }
}

impl AccessLog {
    /// Starts the writer thread, writing to `output` (stdout in vane).
    pub fn start(format: Format, output: Box<dyn Write + Send>) -> std::io::Result<(Self, Writer)> {
        let (lines, received) = sync_channel(QUEUE_LINES);
        let counts = Arc::new(Counts::default());
        let writer = std::thread::Builder::new()
            .name("vane-access-log".into())
            .spawn({
                let counts = counts.clone();
                move || write_lines(&received, &counts, output)
            })?;
        let queue = Arc::new(Queue { lines, counts });
        Ok((Self { format, queue }, Writer(writer)))
    }

    pub fn counts(&self) -> Arc<Counts> {
        self.queue.counts.clone()
    }

    /// Formats `entry` and queues it, or drops it if the queue is full.
    pub fn log(&self, entry: &Entry<'_>) {
        let line = match self.format {
            Format::Json => entry.json(),
            Format::Text => entry.text(),
        };
        let counts = &self.queue.counts;
        let size = line.len();
        if counts.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > QUEUE_BYTES {
            counts.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.lines.try_send(line)
        {
            counts.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How long the writer lets lines gather once it has written all it had. Without the pause it
/// would wake for nearly every line, and each wake costs the worker that queued the line a
/// futex call and the machine a context switch: in `make bench` the JSON log added 12.5 µs per
/// request that way, and adds 1.7 µs with the pause (nginx's unbuffered `access_log`: 1.6 µs).
const GATHER: Duration = Duration::from_millis(10);
/// Most bytes handed to one write.
const BATCH_BYTES: usize = 64 * 1024;

/// Writes lines until every sender is gone: what is queued goes out in writes of up to
/// [`BATCH_BYTES`], then the writer pauses for [`GATHER`].
fn write_lines(received: &Receiver<String>, counts: &Counts, mut output: Box<dyn Write + Send>) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(first) = received.recv() {
        let mut next = Some(first);
        while let Some(line) = next.take() {
            let mut taken = line.len();
            batch.extend_from_slice(line.as_bytes());
            while batch.len() < BATCH_BYTES {
                let Ok(line) = received.try_recv() else { break };
                taken += line.len();
                batch.extend_from_slice(line.as_bytes());
            }
            let written = output.write_all(&batch).and_then(|()| output.flush());
            counts.queued_bytes.fetch_sub(taken, Ordering::Relaxed);
            batch.clear();
            if let Err(error) = written {
                // Nowhere left to write: the lines that follow are counted as dropped.
                warn!(%error, "the access log cannot be written; lines are dropped from now on");
                drop(output);
                for line in received {
                    counts.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            next = received.try_recv().ok();
        }
        std::thread::sleep(GATHER);
    }
}

/// One try at an endpoint: where, what it answered (no status when it failed), how long it
/// took to the response headers (or the failure).
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub address: SocketAddr,
    pub status: Option<u16>,
    pub took: Duration,
}

/// What one access log line says.
#[derive(Debug)]
pub struct Entry<'r> {
    /// When the request arrived.
    pub time: SystemTime,
    pub client: IpAddr,
    pub method: &'r str,
    pub host: &'r str,
    /// The request target as the client sent it (path and query).
    pub target: &'r str,
    pub protocol: &'static str,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration: Duration,
    pub attempts: &'r [Attempt],
    pub namespace: &'r str,
    pub ingress: &'r str,
    pub service: &'r str,
    pub request_id: &'r str,
    pub trace_id: &'r str,
    pub user_agent: &'r str,
    pub referer: &'r str,
    pub tls_version: &'r str,
    pub sni: &'r str,
}

#[derive(Serialize)]
struct JsonLine<'e> {
    time: String,
    client: IpAddr,
    method: &'e str,
    host: &'e str,
    path: &'e str,
    protocol: &'e str,
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    duration: f64,
    upstreams: Vec<JsonAttempt>,
    namespace: &'e str,
    ingress: &'e str,
    service: &'e str,
    request_id: &'e str,
    trace_id: &'e str,
    user_agent: &'e str,
    referer: &'e str,
    tls_version: &'e str,
    sni: &'e str,
}

#[derive(Serialize)]
struct JsonAttempt {
    address: SocketAddr,
    status: Option<u16>,
    duration: f64,
}

impl Entry<'_> {
    fn json(&self) -> String {
        let line = JsonLine {
            time: rfc3339(self.time),
            client: self.client,
            method: self.method,
            host: self.host,
            path: self.target,
            protocol: self.protocol,
            status: self.status,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            duration: self.duration.as_secs_f64(),
            upstreams: self
                .attempts
                .iter()
                .map(|a| JsonAttempt {
                    address: a.address,
                    status: a.status,
                    duration: a.took.as_secs_f64(),
                })
                .collect(),
            namespace: self.namespace,
            ingress: self.ingress,
            service: self.service,
            request_id: self.request_id,
            trace_id: self.trace_id,
            user_agent: self.user_agent,
            referer: self.referer,
            tls_version: self.tls_version,
            sni: self.sni,
        };
        let mut text = serde_json::to_string(&line).expect("strings and numbers serialize");
        text.push('\n');
        text
    }

    /// ingress-nginx's `upstreaminfo`, with vane's names for its variables:
    /// `client - - [time] "method target protocol" status response_bytes "referer" "user_agent"
    /// request_bytes duration [namespace/ingress/service] [] addresses response_bytes times
    /// statuses request_id`, then `trace_id tls_version sni`. Missing values are `-`; several
    /// attempts are listed with `, ` as nginx does.
    fn text(&self) -> String {
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} {:.3} [{}/{}/{}] [] ",
            self.client,
            common_log_time(self.time),
            Escaped(self.method),
            Escaped(self.target),
            self.protocol,
            self.status,
            self.response_bytes,
            Escaped(or_dash(self.referer)),
            Escaped(or_dash(self.user_agent)),
            self.request_bytes,
            self.duration.as_secs_f64(),
            self.namespace,
            self.ingress,
            self.service,
        );
        if self.attempts.is_empty() {
            line.push_str("- - - -");
        } else {
            let list = |line: &mut String, item: &dyn Fn(&mut String, &Attempt)| {
                for (index, attempt) in self.attempts.iter().enumerate() {
                    if index > 0 {
                        line.push_str(", ");
                    }
                    item(line, attempt);
                }
            };
            list(&mut line, &|l, a| {
                let _ = write!(l, "{}", a.address);
            });
            // The response length is known for the last attempt only (the one answered).
            let _ = write!(line, " {} ", self.response_bytes);
            list(&mut line, &|l, a| {
                let _ = write!(l, "{:.3}", a.took.as_secs_f64());
            });
            line.push(' ');
            list(&mut line, &|l, a| match a.status {
                Some(status) => {
                    let _ = write!(l, "{status}");
                }
                None => l.push('-'),
            });
        }
        let _ = writeln!(
            line,
            " {} {} {} {}",
            or_dash(self.request_id),
            or_dash(self.trace_id),
            or_dash(self.tls_version),
            Escaped(or_dash(self.sni)),
        );
        line
    }
}

fn or_dash(value: &str) -> &str {
    if value.is_empty() {
        "-"
    } else {
        value
    }
}

/// A value written as nginx writes variables into its log: `"`, `\` and bytes outside printable
/// ASCII as `\xHH`, so that a client cannot break a line or forge a field.
struct Escaped<'v>(&'v str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0.bytes() {
            if byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte) {
                write!(f, "\\x{byte:02X}")?;
            } else {
                f.write_char(char::from(byte))?;
            }
        }
        Ok(())
    }
}

/// `2026-12-03T14:43:04.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let time = time::OffsetDateTime::from(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

/// nginx's `$time_local` in UTC: `03/Dec/2026:14:43:04 +0000`.
fn common_log_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let time = time::OffsetDateTime::from(time);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        time.day(),
        MONTHS[usize::from(u8::from(time.month())) - 1],
        time.year(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'e>(attempts: &'e [Attempt]) -> Entry<'e> {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_773_000_250),
            client: "192.0.2.7".parse().unwrap(),
            method: "GET",
            host: "shop.example.com",
            target: "/cart?id=\"1\"",
            protocol: "HTTP/1.1",
            status: 200,
            request_bytes: 0,
            response_bytes: 512,
            duration: Duration::from_millis(12),
            attempts,
            namespace: "default",
            ingress: "shop",
            service: "web",
            request_id: "0123abcd",
            trace_id: "",
            user_agent: "curl/8.0\n",
            referer: "",
            tls_version: "",
            sni: "",
        }
    }

    const ATTEMPTS: [Attempt; 2] = [
        Attempt {
            address: SocketAddr::new(
                std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
                80,
            ),
            status: None,
            took: Duration::from_millis(1),
        },
        Attempt {
            address: SocketAddr::new(
                std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)),
                80,
            ),
            status: Some(200),
            took: Duration::from_millis(10),
        },
    ];

    #[test]
    fn text_lines_follow_upstreaminfo_and_escape_what_a_client_sent() {
        let line = entry(&ATTEMPTS).text();
        assert_eq!(
            line,
            "192.0.2.7 - - [03/Dec/2025:14:43:20 +0000] \"GET /cart?id=\\x221\\x22 HTTP/1.1\" 200 512 \"-\" \"curl/8.0\\x0A\" 0 0.012 [default/shop/web] [] 10.0.0.1:80, 10.0.0.2:80 512 0.001, 0.010 -, 200 0123abcd - - -\n"
        );
        let unanswered = entry(&[]).text();
        assert!(
            unanswered.contains("[default/shop/web] [] - - - - 0123abcd"),
            "{unanswered}"
        );
    }

    #[test]
    fn json_lines_have_every_field() {
        let line = entry(&ATTEMPTS).json();
        assert!(line.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2025-12-03T14:43:20.250Z");
        assert_eq!(value["path"], "/cart?id=\"1\"");
        assert_eq!(value["user_agent"], "curl/8.0\n");
        assert_eq!(value["upstreams"][0]["status"], serde_json::Value::Null);
        assert_eq!(value["upstreams"][1]["address"], "10.0.0.2:80");
        assert_eq!(value["duration"], 0.012);
    }

    #[test]
    fn a_full_queue_drops_lines_and_counts_them() {
        // A writer that never returns until told: the queue fills behind it.
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        struct Stuck(Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (log, writer) = AccessLog::start(Format::Text, Box::new(Stuck(blocked))).unwrap();
        let line_bytes = entry(&ATTEMPTS).text().len();
        let fits = QUEUE_BYTES / line_bytes;
        for _ in 0..fits + 100 {
            log.log(&entry(&ATTEMPTS));
        }
        // The batch being written still counts against the queue until it is written.
        assert_eq!(log.counts().dropped(), 100);
        drop(release);
        drop(log);
        writer.finish();
    }
}
