//! A request's access-log line: its [`AccessRecord`] written in the compiled
//! [`AccessFormat`] (gunicorn's atoms, or the JSON object), then appended
//! to the access log's sink.
//!
//! Rules this module keeps:
//! - The format's rules (see [`super::format`]): an atom with no value
//!   writes `-`; text from the client or the application is escaped.
//! - JSON (`--access-log-format json`), keys in this order: `time`
//!   (RFC 3339, UTC, when the request head arrived), `remote_addr`, `user`
//!   (basic-auth user), `method`, `path` (as sent, percent-encoded), `query`,
//!   `protocol`, `status`, `bytes` (body bytes sent), `duration` (seconds),
//!   `referer`, `user_agent`, and `request_id` (the `X-Request-ID` request
//!   field) only when the request had one. A value not known is `null`
//!   (a refused request that was not understood has no method or path).

use std::borrow::Cow;
use std::io::Write;

use percent_encoding::percent_decode;

use super::access::{self, AccessRecord};
use super::clock;
use super::format::{escape_into, AccessFormat, Atom, Piece};
use super::json::field;

impl AccessRecord {
    /// Writes the line, with `bytes` of body sent and the time taken until now.
    /// The metrics count the request as answered then too.
    pub fn write(mut self, bytes: u64) {
        if !self.finish(bytes) {
            return;
        }
        let mut line = Vec::with_capacity(192);
        self.format().render(&self, &mut line);
        access::append(&line);
    }
}

impl AccessFormat {
    /// Appends the line of `record` (with its newline) to `out`.
    pub fn render(&self, record: &AccessRecord, out: &mut Vec<u8>) {
        if self.is_json() {
            json_line(record, out);
            return;
        }
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Atom(atom) => write_atom(*atom, record, out),
            }
        }
        out.push(b'\n');
    }
}

fn write_atom(atom: Atom, r: &AccessRecord, out: &mut Vec<u8>) {
    let micros = r.duration.as_micros();
    // Writes to a Vec cannot fail.
    let _ = match atom {
        Atom::Remote => match r.remote {
            Some(ip) => write!(out, "{ip}"),
            None => write!(out, "-"),
        },
        Atom::Dash => write!(out, "-"),
        Atom::Time => {
            clock::write_clf(r.started, out);
            Ok(())
        }
        Atom::Status => write!(out, "{}", r.status),
        Atom::Bytes => write!(out, "{}", r.bytes),
        Atom::Seconds => write!(out, "{}", micros / 1_000_000),
        Atom::Millis => write!(out, "{}", micros / 1_000),
        Atom::Micros => write!(out, "{micros}"),
        Atom::DecimalSeconds => write!(out, "{}.{:06}", micros / 1_000_000, micros % 1_000_000),
        Atom::Pid => write!(out, "<{}>", std::process::id()),
        _ => {
            match client_text(atom, r) {
                Some(text) => escape_into(&text, out),
                None => out.push(b'-'),
            }
            Ok(())
        }
    };
}

/// The value of an atom whose text comes from the client or the application
/// (escaped when written); `None` when unknown.
fn client_text(atom: Atom, r: &AccessRecord) -> Option<Cow<'_, [u8]>> {
    fn borrowed(s: &str) -> Cow<'_, [u8]> {
        Cow::Borrowed(s.as_bytes())
    }
    match atom {
        Atom::User => r.user.as_deref().map(borrowed),
        Atom::RequestLine => r.request_line().map(|l| Cow::Owned(l.into_bytes())),
        Atom::Method => r.method().map(borrowed),
        Atom::Path => r.path().map(|p| Cow::Owned(decoded(p).into_bytes())),
        Atom::Query => r.query().map(borrowed),
        Atom::Target => r.target().map(borrowed),
        Atom::Protocol => r.protocol().map(borrowed),
        Atom::Referer => r.referer.as_ref().map(|v| Cow::Borrowed(v.as_bytes())),
        Atom::UserAgent => r.user_agent.as_ref().map(|v| Cow::Borrowed(v.as_bytes())),
        Atom::RequestField(i) => r.request_field(i).map(Cow::Borrowed),
        Atom::ResponseField(i) => r.response_field(i).map(Cow::Borrowed),
        _ => None,
    }
}

/// The path as PATH_INFO has it: percent-decoded (as UTF-8, lossily).
fn decoded(path: &str) -> String {
    String::from_utf8_lossy(&percent_decode(path.as_bytes()).collect::<Vec<u8>>()).into_owned()
}

/// Text from the wire as a JSON string (invalid UTF-8 replaced).
fn lossy(value: Option<&[u8]>) -> Option<Cow<'_, str>> {
    value.map(String::from_utf8_lossy)
}

/// Appends the JSON access-log line of `r` (with its newline) to `out`.
fn json_line(r: &AccessRecord, out: &mut Vec<u8>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded() {
        assert_eq!(decoded("/caf%C3%A9%20x"), "/café x");
    }
}
