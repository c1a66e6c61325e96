//! The error log (stderr) and the access log (a file or stdout).
//!
//! One format for every error-log line, whoever writes it (Rust through
//! `tracing`, Python through `_ferrowsgi.log`): gunicorn's shape, so that
//! existing log parsers keep working,
//! `[2026-11-22 10:00:00 +0000] [1234] [INFO] message`, or with
//! `--log-format json` one JSON object per line (see [`json`]), a Python
//! traceback in its own `traceback` field.
//!
//! The access log is off unless configured; its lines follow the compiled
//! `--access-log-format` (see [`format`]); the default is the combined log
//! format followed by the request time in microseconds:
//! `127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/8.0" 412`.
//!
//! Files, each importing only those after it: `line.rs` (a record written
//! as its line), `access.rs` (the record and the sink), `format.rs` (the
//! compiled `--access-log-format`), `json.rs` (JSON fields, the error-log
//! line), `clock.rs` (timestamps). This file holds the error log and [`init`].

mod access;
mod clock;
pub mod format;
mod json;
mod line;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

pub use access::{access_enabled, AccessRecord};
pub use format::{AccessFormat, FormatError};

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
/// Whether error-log lines are JSON objects (`--log-format json`).
static JSON_ERRORS: AtomicBool = AtomicBool::new(false);
static TRACING: OnceLock<()> = OnceLock::new();

/// How the logs are written: [`init`]'s settings.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings<'a> {
    /// Error-log lines below this severity are dropped.
    pub level: Severity,
    /// Error-log lines as JSON objects (`--log-format json`) instead of text.
    pub json_errors: bool,
    /// The access log: `None` (off), `"-"` (stdout) or a path, appended to.
    pub access_log: Option<&'a str>,
    /// `--access-log-format`: gunicorn's atoms or `json`; `None` is
    /// [`format::DEFAULT`].
    pub access_log_format: Option<&'a str>,
}

/// Sets up the error log and the access log. May be called again (the last
/// call wins; the access-log file is opened anew: log rotation).
///
/// # Errors
/// `InvalidInput` for an access-log format that does not compile;
/// `io::Error` when the access-log file cannot be opened.
pub fn init(settings: LogSettings<'_>) -> io::Result<()> {
    let format = AccessFormat::compile(settings.access_log_format.unwrap_or(format::DEFAULT))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    let sink = match settings.access_log {
        None => None,
        Some(path) => Some(access::Sink {
            out: access::open(path)?,
            format: Arc::new(format),
        }),
    };
    THRESHOLD.store(settings.level as u8, Ordering::Relaxed);
    JSON_ERRORS.store(settings.json_errors, Ordering::Relaxed);
    *access::SINK.lock().unwrap_or_else(|e| e.into_inner()) = sink;
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
    emit_traceback(severity, message, None);
}

/// Writes one error-log entry for `message` and a Python `traceback` (as
/// `traceback.format_exception` writes it): text puts the traceback on the
/// lines after the message, JSON in its own `traceback` field.
pub fn emit_traceback(severity: Severity, message: &str, traceback: Option<&str>) {
    if !enabled(severity) {
        return;
    }
    let message = message.trim_end_matches('\n');
    let line = if JSON_ERRORS.load(Ordering::Relaxed) {
        json::error_line(severity.label(), message, traceback)
    } else {
        let mut line = format!("{}{message}\n", prefix(severity));
        if let Some(traceback) = traceback {
            line.push_str(traceback.trim_end_matches('\n'));
            line.push('\n');
        }
        line.into_bytes()
    };
    let _ = io::stderr().lock().write_all(&line);
}

/// Writes raw text to the error log (stderr) as it is: `wsgi.errors`.
pub fn write_raw(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// `[2026-11-22 10:00:00 +0000] [pid] [LEVEL] `.
fn prefix(severity: Severity) -> String {
    format!(
        "[{}] [{}] [{}] ",
        clock::error_log(SystemTime::now()),
        std::process::id(),
        severity.label()
    )
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
        if JSON_ERRORS.load(Ordering::Relaxed) {
            let mut message = String::new();
            ctx.field_format()
                .format_fields(Writer::new(&mut message), event)?;
            let line = json::error_line(severity.label(), &message, None);
            return writer.write_str(&String::from_utf8_lossy(&line));
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
    fn severities_parse() {
        assert_eq!(Severity::parse("WARNING"), Some(Severity::Warning));
        assert_eq!(Severity::parse("loud"), None);
        assert!(Severity::Error < Severity::Debug);
    }
}
