//! Which request paths may name a file under a `--static` directory.
//!
//! Rules (each refusal is answered 404, as for a missing file, so that a
//! probe learns nothing about what lies outside the directory):
//! - The path is read as sent, still percent-encoded (RFC 3986 §2.1), and
//!   decoded exactly once. A `%` triple left after that one decoding is
//!   double encoding (`%252e%252e`) and is refused: no file of a site is
//!   named that way, and a second decoder further on would see `..`.
//! - An encoded separator or NUL (`%2f`, `%5c`, `%00`) is refused before
//!   decoding: it would change where the segments break.
//! - After decoding: a backslash (a separator elsewhere), NUL or any other
//!   control character, a `.` or `..` segment (RFC 3986 §3.3 dot-segments)
//!   and an empty segment before the last (`//etc/passwd`, an absolute path
//!   once the leading slash is stripped) are refused.
//!
//! Symlinks are not a question of the path's text: the backend
//! ([`super::confined`]) checks where each file really lies.

use percent_encoding::percent_decode_str;

/// Whether `rest`, the part of the request path under a `--static` prefix
/// (`""` or starting with `/`, still percent-encoded), may be looked up in
/// the directory. `false`: answer 404.
pub fn is_safe(rest: &str) -> bool {
    if rest.contains('\\') || has_encoded_separator(rest) {
        return false;
    }
    let Ok(decoded) = percent_decode_str(rest).decode_utf8() else {
        return false;
    };
    if decoded.chars().any(|c| c.is_control() || c == '\\') || has_percent_triple(&decoded) {
        return false;
    }
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Whether `text` holds `%2f`, `%5c` or `%00` (any case).
fn has_encoded_separator(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'f') | (b'5', b'c') | (b'0', b'0')
            )
    })
}

/// Whether `text` still holds a `%XX` triple (two hex digits).
fn has_percent_triple(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::is_safe;

    #[test]
    fn plain_paths_pass() {
        for ok in [
            "",
            "/",
            "/app.css",
            "/admin/css/base.css",
            "/dir/",
            "/caf%C3%A9.txt",
            "/a%20b.txt",
            "/100%.txt",
            "/..hidden",
            "/a..b",
        ] {
            assert!(is_safe(ok), "{ok:?} refused");
        }
    }

    #[test]
    fn traversal_in_every_encoding_is_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/..",
            "/./a",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/..%2fetc%2fpasswd",
            "/..%2Fetc",
            "/%252e%252e/etc/passwd",
            "/%252e%252e%252fetc",
            "/..\\etc\\passwd",
            "/..%5cetc",
            "/a%00.txt",
            "/a%0a.txt",
            "//etc/passwd",
            "/a//b",
            "/%ff.txt",
        ] {
            assert!(!is_safe(bad), "{bad:?} accepted");
        }
    }
}
