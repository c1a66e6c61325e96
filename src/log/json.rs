//! The JSON forms of the logs: one object per line (JSON Lines), strings
//! escaped by serde_json, so a line never breaks however odd a header is.
//!
//! Access log (`--access-log-format json`): written by [`super::line`]
//! with this module's [`field`]; its keys are listed there.
//!
//! Error log (`--log-format json`): `time`, `level`, `pid`, `message`, and
//! `traceback` (the whole Python traceback as one string) for an exception.

use std::io::Write;
use std::time::SystemTime;

use super::clock;

/// Appends `"key":value` (with the comma before it unless `first`).
pub(super) fn field<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    key: &str,
    value: &T,
    first: bool,
) {
    if !first {
        out.push(b',');
    }
    // Writing a str or number to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

/// One error-log line: `{"time":…,"level":…,"pid":…,"message":…}` plus
/// `"traceback"` when there is one; ends with a newline.
pub(super) fn error_line(level: &str, message: &str, traceback: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + message.len());
    out.push(b'{');
    field(&mut out, "time", &clock::rfc3339(SystemTime::now()), true);
    field(&mut out, "level", level, false);
    field(&mut out, "pid", &std::process::id(), false);
    field(&mut out, "message", message, false);
    if let Some(traceback) = traceback {
        field(&mut out, "traceback", traceback, false);
    }
    let _ = out.write_all(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_parse() {
        let line = error_line("ERROR", "boom \"x\"\n", Some("Traceback\n  line\n"));
        let value: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(value["level"], "ERROR");
        assert_eq!(value["message"], "boom \"x\"\n");
        assert_eq!(value["traceback"], "Traceback\n  line\n");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
