//! The error log (stderr) and the access log (a file or stdout).
//!
//! One format for every error-log line, whoever writes it (Rust through
//! `tracing`, Python through `_ferrowsgi.log`), in gunicorn's shape so that
//! existing log parsers keep working:
//! `[2026-11-22 10:00:00 +0000] [1234] [INFO] message`.
//!
//! The access log is off unless configured; each line is the combined log
//! format followed by the request time in microseconds:
//! `127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/8.0" 412`.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, LineWriter, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// Severity of an error-log line, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The server cannot go on.
    Critical = 1,
    /// A request or the application failed.
    Error = 2,
    /// Something is wrong but served anyway.
    Warning = 3,
    /// Start-up, shutdown, lifecycle.
    Info = 4,
    /// Per-connection detail (client disconnects, parse errors).
    Debug = 5,
}

impl Severity {
    /// Parses `critical`, `error`, `warning` (or `warn`), `info`, `debug`, any case.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "critical" | "fatal" => Severity::Critical,
            "error" => Severity::Error,
            "warning" | "warn" => Severity::Warning,
            "info" => Severity::Info,
            "debug" | "trace" => Severity::Debug,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
            Severity::Debug => "DEBUG",
        }
    }

    fn from_tracing(level: &Level) -> Self {
        match *level {
            Level::ERROR => Severity::Error,
            Level::WARN => Severity::Warning,
            Level::INFO => Severity::Info,
            _ => Severity::Debug,
        }
    }
}

/// The most verbose severity written; lines below it are dropped.
static THRESHOLD: AtomicU8 = AtomicU8::new(Severity::Info as u8);
/// Where access-log lines go; `None` when the access log is off.
static ACCESS: Mutex<Option<Box<dyn Write + Send>>> = Mutex::new(None);
static TRACING: OnceLock<()> = OnceLock::new();

/// Sets the error-log level and the access-log destination.
///
/// `access_log`: `None` (off), `"-"` (stdout) or a path, opened for append.
/// May be called again (the last call wins).
///
/// # Errors
/// `io::Error` when the access-log file cannot be opened.
pub fn init(level: Severity, access_log: Option<&str>) -> io::Result<()> {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
    let out: Option<Box<dyn Write + Send>> = match access_log {
        None => None,
        Some("-") => Some(Box::new(LineWriter::new(io::stdout()))),
        Some(path) => Some(Box::new(LineWriter::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        ))),
    };
    *ACCESS.lock().unwrap_or_else(|e| e.into_inner()) = out;
    TRACING.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .event_format(LineFormat)
            .with_writer(io::stderr)
            .finish()
            .with(library_filter());
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    Ok(())
}

/// Our own events down to DEBUG; the libraries' (hyper and h2 log every
/// HTTP/2 frame at DEBUG) from INFO only, so the debug log stays readable
/// and their per-frame events cost nothing.
fn library_filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_default(Level::DEBUG)
        .with_target("h2", Level::INFO)
        .with_target("hyper", Level::INFO)
        .with_target("hyper_util", Level::INFO)
}

/// Whether a line at `severity` would be written.
pub fn enabled(severity: Severity) -> bool {
    severity as u8 <= THRESHOLD.load(Ordering::Relaxed)
}

/// Writes one error-log line (several, for a multi-line message) to stderr.
pub fn emit(severity: Severity, message: &str) {
    if enabled(severity) {
        let line = format!("{}{}\n", prefix(severity), message.trim_end_matches('\n'));
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Writes raw text to the error log (stderr) as it is: `wsgi.errors`.
pub fn write_raw(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Whether access-log lines are wanted (so callers can skip building them).
pub fn access_enabled() -> bool {
    ACCESS.lock().map(|a| a.is_some()).unwrap_or(false)
}

/// One finished request, as the access log records it.
#[derive(Debug)]
pub struct AccessRecord {
    /// Client address (`REMOTE_ADDR`).
    pub remote: String,
    /// When the request head arrived.
    pub started: SystemTime,
    /// `METHOD target HTTP/x.y`.
    pub request_line: String,
    /// Response status code.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// `Referer` request header, or `-`.
    pub referer: String,
    /// `User-Agent` request header, or `-`.
    pub user_agent: String,
    /// Time from the request head to the end of the response.
    pub duration: Duration,
}

impl AccessRecord {
    /// The record of a request whose head just arrived from `peer` (`None`:
    /// a unix socket client); status, bytes and duration are filled in
    /// when it is answered. Every engine makes its records here.
    pub fn new(
        method: &http::Method,
        uri: &http::Uri,
        version: http::Version,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        let header = |name| {
            headers
                .get(name)
                .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "-".to_owned())
        };
        AccessRecord {
            remote: peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
            started: SystemTime::now(),
            request_line: format!("{method} {uri} {version:?}"),
            status: 0,
            bytes: 0,
            referer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
            duration: Duration::ZERO,
        }
    }
}

/// Writes one access-log line (no-op when the access log is off).
pub fn access(record: &AccessRecord) {
    let mut guard = ACCESS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(out) = guard.as_mut() {
        let (y, mo, d, h, mi, s) = civil(record.started);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut line = String::with_capacity(160);
        let _ = writeln!(
            line,
            "{} - - [{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000] \"{}\" {} {} \"{}\" \"{}\" {}",
            record.remote,
            MONTHS[(mo - 1) as usize],
            record.request_line.escape_debug(),
            record.status,
            record.bytes,
            record.referer.escape_debug(),
            record.user_agent.escape_debug(),
            record.duration.as_micros(),
        );
        let _ = out.write_all(line.as_bytes());
    }
}

/// `[2026-11-22 10:00:00 +0000] [pid] [LEVEL] `.
fn prefix(severity: Severity) -> String {
    let (y, mo, d, h, mi, s) = civil(SystemTime::now());
    format!(
        "[{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000] [{}] [{}] ",
        std::process::id(),
        severity.label()
    )
}

/// UTC calendar date and time of `t`: (year, month 1-12, day, hour, min, sec).
/// Howard Hinnant's `civil_from_days`; exact for every date after 1970.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `tracing` events in the error-log format, filtered by [`THRESHOLD`].
struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let severity = Severity::from_tracing(event.metadata().level());
        if !enabled(severity) {
            return Ok(());
        }
        writer.write_str(&prefix(severity))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let at = |s: u64| civil(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(1_795_343_696), (2026, 11, 22, 10, 34, 56));
    }

    #[test]
    fn severities_parse() {
        assert_eq!(Severity::parse("WARNING"), Some(Severity::Warning));
        assert_eq!(Severity::parse("loud"), None);
        assert!(Severity::Error < Severity::Debug);
    }
}
