//! Which content coding a client accepts best: `Accept-Encoding` with its
//! q-values, RFC 9110 §12.5.3.
//!
//! Rules:
//! - Each element is `coding[;q=VALUE]`; a missing q is 1, a q of 0 means
//!   "not acceptable", an element whose q is not a qvalue (§12.4.2) is
//!   ignored. Codings are case-insensitive; `x-gzip` is `gzip`.
//! - A coding not listed takes the q of `*` when there is one, else it is
//!   not acceptable.
//! - `identity` counts only when listed (or through `*`): a client that
//!   lists `gzip;q=0.5` alone still wants gzip.
//! - The highest q wins; between equal q's the server prefers zstd, then
//!   br, then gzip, and any of them to identity (tower-http's order).
//! - Several `Accept-Encoding` fields are one list (RFC 9110 §5.3); an
//!   empty field allows identity only.

use http::header::{HeaderMap, ACCEPT_ENCODING};

/// A content coding the server can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` (RFC 9110 §8.4.1.3).
    Gzip,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878).
    Zstd,
}

impl Coding {
    /// The token that names it in `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// Most preferred first, on equal q-values.
    const BY_PREFERENCE: [Coding; 3] = [Coding::Zstd, Coding::Brotli, Coding::Gzip];
}

/// A qvalue in thousandths (0 to 1000).
type Q = u16;

/// The q-values a request's `Accept-Encoding` gives, `None` where not listed.
#[derive(Debug, Default)]
struct Accepted {
    gzip: Option<Q>,
    br: Option<Q>,
    zstd: Option<Q>,
    identity: Option<Q>,
    any: Option<Q>,
}

impl Accepted {
    fn slot(&mut self, coding: &str) -> Option<&mut Option<Q>> {
        let is = |name: &str| coding.eq_ignore_ascii_case(name);
        match coding {
            _ if is("gzip") || is("x-gzip") => Some(&mut self.gzip),
            _ if is("br") => Some(&mut self.br),
            _ if is("zstd") => Some(&mut self.zstd),
            _ if is("identity") => Some(&mut self.identity),
            "*" => Some(&mut self.any),
            _ => None,
        }
    }

    fn of(&self, coding: Coding) -> Q {
        let listed = match coding {
            Coding::Gzip => self.gzip,
            Coding::Brotli => self.br,
            Coding::Zstd => self.zstd,
        };
        listed.or(self.any).unwrap_or(0)
    }
}

/// The coding to apply for a request with `headers`: `None` when there is
/// no `Accept-Encoding`, when identity is preferred, or when nothing the
/// server has is acceptable (the response then goes out unchanged).
pub fn choose(headers: &HeaderMap) -> Option<Coding> {
    let mut fields = headers.get_all(ACCEPT_ENCODING).iter().peekable();
    fields.peek()?;
    let mut accepted = Accepted::default();
    for element in fields
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = element.split(';');
        let name = parts.next().unwrap_or("").trim();
        let Some(q) = parts.find_map(q_param).unwrap_or(Some(1000)) else {
            continue; // a malformed q: the element says nothing
        };
        if let Some(slot) = accepted.slot(name) {
            slot.get_or_insert(q);
        }
    }
    let (best, q) = Coding::BY_PREFERENCE
        .into_iter()
        .map(|c| (c, accepted.of(c)))
        .fold(
            (Coding::Gzip, 0),
            |top, next| {
                if next.1 > top.1 {
                    next
                } else {
                    top
                }
            },
        );
    let identity = accepted.identity.or(accepted.any).unwrap_or(0);
    (q > 0 && q >= identity).then_some(best)
}

/// A `q=VALUE` parameter: `Some(Some(q))`, `Some(None)` if its value is not
/// a qvalue (RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`), `None` for any
/// other parameter.
fn q_param(param: &str) -> Option<Option<Q>> {
    let (key, value) = param.split_once('=')?;
    if !key.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    Some(qvalue(value.trim()))
}

fn qvalue(text: &str) -> Option<Q> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: Q = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        thousandths += Q::from(digit - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(fields: &[&str]) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        for field in fields {
            headers.append(ACCEPT_ENCODING, field.parse().unwrap());
        }
        choose(&headers).map(Coding::token)
    }

    #[test]
    fn q_values_decide() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&[""], None),
            (&["gzip"], Some("gzip")),
            (&["GZIP"], Some("gzip")),
            (&["x-gzip"], Some("gzip")),
            (&["br"], Some("br")),
            (&["zstd"], Some("zstd")),
            (&["gzip, deflate, br, zstd"], Some("zstd")),
            (&["gzip, br"], Some("br")),
            (&["gzip;q=0.5, br;q=1"], Some("br")),
            (&["gzip;q=1.0, br;q=0.9"], Some("gzip")),
            (&["gzip ; q=0.25 , zstd;q=0.2"], Some("gzip")),
            (&["gzip", "br;q=0.1"], Some("gzip")),
            (&["identity"], None),
            (&["identity, gzip"], Some("gzip")),
            (&["identity;q=1, gzip;q=0.5"], None),
            (&["gzip;q=0.5"], Some("gzip")),
            (&["*"], Some("zstd")),
            (&["*;q=0"], None),
            (&["*;q=0, gzip"], Some("gzip")),
            (&["*, zstd;q=0"], Some("br")),
            (&["gzip;q=0"], None),
            (&["gzip;q=0, identity;q=0"], None),
            (&["compress, deflate"], None),
            (&["gzip;q=2"], None),
            (&["gzip;q=0.1234"], None),
            (&["gzip;q=abc, br"], Some("br")),
            (&["gzip;level=9"], Some("gzip")),
        ];
        for (fields, want) in cases {
            assert_eq!(chosen(fields), *want, "{fields:?}");
        }
    }

    #[test]
    fn qvalues_parse_by_the_grammar() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.05"), Some(50));
        assert_eq!(qvalue("0.001"), Some(1));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0."), Some(0));
        for bad in ["", "1.5", "1.001", "2", "-0", ".5", "0.1.2", "0.12a"] {
            assert_eq!(qvalue(bad), None, "{bad:?}");
        }
    }
}
