//! The JSON forms of the logs: one object per line (JSON Lines), strings
//! escaped by serde_json, so a line never breaks however odd a header is.
//!
//! Access log (`--access-log-format json`), keys in this order: `time`
//! (RFC 3339, UTC, when the request head arrived), `remote_addr`, `user`
//! (basic-auth user), `method`, `path` (as sent, percent-encoded), `query`,
//! `protocol`, `status`, `bytes` (body bytes sent), `duration` (seconds),
//! `referer`, `user_agent`, and `request_id` (the `X-Request-ID` request
//! field) only when the request had one. A value not known is `null`
//! (a refused request that was not understood has no method or path).
//!
//! Error log (`--log-format json`): `time`, `level`, `pid`, `message`, and
//! `traceback` (the whole Python traceback as one string) for an exception.

use std::io::Write;
use std::time::SystemTime;

use super::access::AccessRecord;
use super::clock;

/// Appends `"key":value` (with the comma before it unless `first`).
fn field<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, value: &T, first: bool) {
    if !first {
        out.push(b',');
    }
    // Writing a str or number to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, key);
    out.push(b':');
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Text from the wire as a JSON string (invalid UTF-8 replaced).
fn lossy(value: Option<&[u8]>) -> Option<std::borrow::Cow<'_, str>> {
    value.map(String::from_utf8_lossy)
}

/// Appends the access-log line of `r` (with its newline) to `out`.
pub(super) fn access_line(r: &AccessRecord, out: &mut Vec<u8>) {
    out.push(b'{');
    field(out, "time", &clock::rfc3339(r.started), true);
    field(
        out,
        "remote_addr",
        &r.remote.map(|ip| ip.to_string()),
        false,
    );
    field(out, "user", &r.user, false);
    field(out, "method", &r.method(), false);
    field(out, "path", &r.path(), false);
    field(out, "query", &r.query(), false);
    field(out, "protocol", &r.protocol(), false);
    field(out, "status", &r.status, false);
    field(out, "bytes", &r.bytes, false);
    field(out, "duration", &r.duration.as_secs_f64(), false);
    field(
        out,
        "referer",
        &lossy(r.referer.as_ref().map(|v| v.as_bytes())),
        false,
    );
    field(
        out,
        "user_agent",
        &lossy(r.user_agent.as_ref().map(|v| v.as_bytes())),
        false,
    );
    if let Some(id) = r.request_id() {
        field(out, "request_id", &String::from_utf8_lossy(id), false);
    }
    out.extend_from_slice(b"}\n");
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
