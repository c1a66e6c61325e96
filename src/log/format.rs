//! The access-log format: gunicorn's `access_log_format` atoms, or `json`,
//! compiled once at start-up into a list of pieces; a request's line is then
//! written from its record (`line.rs`) without parsing anything.
//!
//! Rules this module keeps (gunicorn's, `gunicorn/glogging.py`, unless said):
//! - `%(NAME)s` is an atom (`d` and `i` are accepted for `s`), `%%` is a `%`;
//!   any other `%` is an error at start-up (gunicorn fails on every request).
//! - An unknown atom writes `-`; so does one whose value is missing
//!   (a header the request did not send).
//! - `{name}i` / `{name}o` are request / response header fields, any case.
//!   `{NAME}e` is a WSGI environ variable in gunicorn; here the CGI ones
//!   known before the application runs (`REQUEST_METHOD`, `PATH_INFO`,
//!   `QUERY_STRING`, `SERVER_PROTOCOL`, `REMOTE_ADDR`, `RAW_URI`,
//!   `REQUEST_URI`, `CONTENT_TYPE`, `CONTENT_LENGTH`, `HTTP_*`), and for any
//!   other name the process's environment variable, read once at start-up.
//! - `b` is the body length in bytes, `0` included (gunicorn ≥ 20; its docs
//!   still say "or '-'"); `t` is in UTC (gunicorn: local time).
//! - Text taken from the client or the application (request line, path,
//!   headers, user) is escaped: `"` and `\` get a backslash, control bytes
//!   become `\xHH`, so one request is always one line.

use std::fmt;
use std::io::Write;

use http::HeaderName;

/// The default access-log format: gunicorn's default followed by the
/// request time in microseconds (ferrowsgi's line since its first release).
pub const DEFAULT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s"#;

/// Request header field whose value the JSON form reports as `request_id`.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A compiled access-log format.
#[derive(Debug)]
pub struct AccessFormat {
    /// The pieces of a text line; empty for JSON.
    pub(super) pieces: Vec<Piece>,
    json: bool,
    /// Request fields a line needs (`{name}i`, `HTTP_NAME` `e`), captured per
    /// request in this order.
    pub(super) request_fields: Vec<HeaderName>,
    /// Response fields a line needs (`{name}o`), captured in this order.
    pub(super) response_fields: Vec<HeaderName>,
    /// Whether lines show the basic-auth user (so `Authorization` is decoded).
    pub(super) wants_user: bool,
}

/// An access-log format that cannot be used; the message says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A piece of a text line: literal text or an atom.
#[derive(Debug)]
pub(super) enum Piece {
    Text(String),
    Atom(Atom),
}

/// What an atom writes (its value, from the record).
#[derive(Debug, Clone, Copy)]
pub(super) enum Atom {
    Remote,
    Dash,
    User,
    Time,
    RequestLine,
    Method,
    Path,
    Query,
    Target,
    Protocol,
    Status,
    Bytes,
    Referer,
    UserAgent,
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    Pid,
    RequestField(usize),
    ResponseField(usize),
}

impl AccessFormat {
    /// Compiles `text`: `json`, or a gunicorn format string.
    ///
    /// # Errors
    /// [`FormatError`] for a `%` that starts no `%(NAME)s` and is no `%%`.
    pub fn compile(text: &str) -> Result<Self, FormatError> {
        let mut format = AccessFormat {
            pieces: Vec::new(),
            json: text.trim().eq_ignore_ascii_case("json"),
            request_fields: Vec::new(),
            response_fields: Vec::new(),
            wants_user: false,
        };
        if format.json {
            format.wants_user = true;
            format.request_fields.push(REQUEST_ID);
            return Ok(format);
        }
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            let offset = text.len() - after.len() - 1;
            let (name, tail) = atom_at(after).ok_or_else(|| {
                FormatError(format!(
                    "'%' at offset {offset} starts no %(NAME)s atom (write %% for a '%')"
                ))
            })?;
            let piece = format.piece(name);
            if !literal.is_empty() {
                format
                    .pieces
                    .push(Piece::Text(std::mem::take(&mut literal)));
            }
            format.pieces.push(piece);
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            format.pieces.push(Piece::Text(literal));
        }
        Ok(format)
    }

    /// Whether lines are JSON objects.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// The piece for atom `name` (gunicorn's names; unknown ones write `-`).
    fn piece(&mut self, name: &str) -> Piece {
        let atom = match name {
            "h" => Atom::Remote,
            "l" => Atom::Dash,
            "u" => {
                self.wants_user = true;
                Atom::User
            }
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "m" => Atom::Method,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "s" => Atom::Status,
            "b" | "B" => Atom::Bytes,
            "f" => Atom::Referer,
            "a" => Atom::UserAgent,
            "T" => Atom::Seconds,
            "M" => Atom::Millis,
            "D" => Atom::Micros,
            "L" => Atom::DecimalSeconds,
            "p" => Atom::Pid,
            _ => return self.braced(name).unwrap_or(Piece::Atom(Atom::Dash)),
        };
        Piece::Atom(atom)
    }

    /// `{name}i`, `{name}o`, `{NAME}e`; `None` when `name` is none of them.
    fn braced(&mut self, name: &str) -> Option<Piece> {
        let inner = name.strip_prefix('{')?;
        let (key, kind) = inner.split_at(inner.len().checked_sub(2)?);
        match kind {
            "}i" => Some(self.request_field(key)),
            "}o" => {
                let field = HeaderName::from_bytes(key.as_bytes()).ok()?;
                Some(Piece::Atom(Atom::ResponseField(index_of(
                    &mut self.response_fields,
                    field,
                ))))
            }
            "}e" => Some(self.variable(key)),
            _ => None,
        }
    }

    fn request_field(&mut self, name: &str) -> Piece {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(field) => Piece::Atom(Atom::RequestField(index_of(
                &mut self.request_fields,
                field,
            ))),
            Err(_) => Piece::Atom(Atom::Dash),
        }
    }

    /// `{NAME}e`: a CGI variable known from the request, else the process's
    /// environment variable NAME as it is now (`-` when unset).
    fn variable(&mut self, name: &str) -> Piece {
        let upper = name.to_ascii_uppercase();
        let atom = match upper.as_str() {
            "REQUEST_METHOD" => Atom::Method,
            "PATH_INFO" => Atom::Path,
            "QUERY_STRING" => Atom::Query,
            "SERVER_PROTOCOL" => Atom::Protocol,
            "REMOTE_ADDR" => Atom::Remote,
            "RAW_URI" | "REQUEST_URI" => Atom::Target,
            "CONTENT_TYPE" => return self.request_field("content-type"),
            "CONTENT_LENGTH" => return self.request_field("content-length"),
            _ => match upper.strip_prefix("HTTP_") {
                Some(field) => return self.request_field(&field.replace('_', "-")),
                None => {
                    let value = std::env::var_os(name).map(|v| escaped(v.as_encoded_bytes()));
                    return Piece::Text(value.unwrap_or_else(|| "-".to_owned()));
                }
            },
        };
        Piece::Atom(atom)
    }
}

/// The atom name after a `%` and the text after its conversion letter:
/// `(h)s rest` → `("h", " rest")`.
fn atom_at(after: &str) -> Option<(&str, &str)> {
    let inner = after.strip_prefix('(')?;
    let close = inner.find(')')?;
    let tail = &inner[close + 1..];
    let tail = tail
        .strip_prefix('s')
        .or_else(|| tail.strip_prefix('d'))
        .or_else(|| tail.strip_prefix('i'))?;
    Some((&inner[..close], tail))
}

/// The position of `field` in `fields`, added when missing.
fn index_of(fields: &mut Vec<HeaderName>, field: HeaderName) -> usize {
    match fields.iter().position(|f| *f == field) {
        Some(i) => i,
        None => {
            fields.push(field);
            fields.len() - 1
        }
    }
}

/// `value` with `"` and `\` backslashed and control bytes as `\xHH`, so
/// that it stays inside its quotes and on its line: an environment value
/// here, once; a client's text in every line ([`super::line`]).
pub(super) fn escape_into(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\x{b:02x}");
            }
            _ => out.push(b),
        }
    }
}

fn escaped(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    escape_into(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_compile() {
        let f = AccessFormat::compile(DEFAULT).expect("default compiles");
        assert!(!f.is_json() && f.wants_user);
        let f = AccessFormat::compile("%(h)s 100%% %({X-Foo}i)s %({x-foo}i)s %({Etag}o)s")
            .expect("compiles");
        assert_eq!(f.request_fields, [HeaderName::from_static("x-foo")]);
        assert_eq!(f.response_fields, [HeaderName::from_static("etag")]);
        assert!(AccessFormat::compile("json").expect("json").is_json());
    }

    #[test]
    fn bad_percents_are_refused() {
        for bad in ["%(h)", "50% off", "%(h", "%s", "%(h)x"] {
            let e = AccessFormat::compile(bad).expect_err(bad);
            assert!(e.0.contains("offset"), "{bad}: {e}");
        }
    }

    #[test]
    fn escaping_keeps_one_line() {
        assert_eq!(escaped(b"a\"b\\c\nd\x7f"), "a\\\"b\\\\c\\x0ad\\x7f");
    }
}
