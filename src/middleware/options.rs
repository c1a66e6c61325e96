//! The built-in middleware's options (`--static`, `--compress`, `--forward`
//! and their timeouts), validated once; the options table documents each.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use crate::config::error::ConfigError;

/// What the built-in middleware is asked to do; the default does nothing.
#[derive(Debug, Clone, Default)]
pub struct MiddlewareConfig {
    /// `--static PREFIX=DIR`: URL prefix (`/static`, never a trailing
    /// slash but for `/`) and the absolute directory it serves.
    pub statics: Vec<(String, PathBuf)>,
    /// `Cache-Control: max-age` of static answers.
    pub static_max_age: Duration,
    /// `--compress`: gzip, br or zstd on the way out.
    pub compress: bool,
    /// `--forward PREFIX=URL[,URL...]`: requests sent to remote backends.
    pub forwards: Vec<ForwardRoute>,
    /// Time a backend gets to connect and send a response head; then 504.
    pub forward_timeout: Duration,
    /// Time a backend that refused or timed out is left out of the rotation.
    pub forward_fail_timeout: Duration,
}

impl MiddlewareConfig {
    /// The values of `static`, `static_max_age`, `compress`, `forward`,
    /// `forward_timeout` and `forward_fail_timeout`, as the debug log shows
    /// them (`ServerConfig::describe`).
    pub fn describe(&self) -> [String; 6] {
        let statics: Vec<String> = self
            .statics
            .iter()
            .map(|(prefix, dir)| format!("{prefix}={}", dir.display()))
            .collect();
        let forwards: Vec<String> = self
            .forwards
            .iter()
            .map(|f| format!("{}={}", f.prefix, show_backends(&f.backends)))
            .collect();
        [
            format!("{statics:?}"),
            self.static_max_age.as_secs_f64().to_string(),
            self.compress.to_string(),
            format!("{forwards:?}"),
            self.forward_timeout.as_secs_f64().to_string(),
            self.forward_fail_timeout.as_secs_f64().to_string(),
        ]
    }
}

/// One `--forward` prefix and its backends, in the order given.
#[derive(Debug, Clone)]
pub struct ForwardRoute {
    /// URL prefix, as for `--static`.
    pub prefix: String,
    /// `http://HOST:PORT[/PATH]` backends.
    pub backends: Vec<Uri>,
}

/// Parses `URL[,URL...]`: each an `http://` URL with a host, a port if not
/// 80, and an optional path; no query or fragment.
///
/// # Errors
/// [`ConfigError`] naming the URL at fault and the form expected.
pub fn parse_backends(text: &str) -> Result<Vec<Uri>, ConfigError> {
    let urls: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(ConfigError(format!(
            "expected URL[,URL...] (http://HOST:PORT), got {text:?}"
        )));
    }
    urls.into_iter().map(parse_backend).collect()
}

fn parse_backend(url: &str) -> Result<Uri, ConfigError> {
    let bad = |why: &str| {
        ConfigError(format!(
            "backend {url:?}: {why}; expected http://HOST:PORT with an optional path"
        ))
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// backends are supported"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("a query or fragment has no meaning here"));
    }
    Ok(uri)
}

/// The backends as given back to Python: canonical URLs, comma-separated.
pub fn show_backends(backends: &[Uri]) -> String {
    let urls: Vec<String> = backends.iter().map(ToString::to_string).collect();
    urls.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_http_urls() {
        let backends = parse_backends("http://10.0.0.5:9000, http://b.example/base").unwrap();
        assert_eq!(backends.len(), 2);
        assert_eq!(backends[0].port_u16(), Some(9000));
        assert_eq!(backends[1].path(), "/base");
        for bad in [
            "",
            ",",
            "https://a:1",
            "a:1",
            "http://",
            "http://a:1/?q=1",
            "ftp://a",
        ] {
            assert!(parse_backends(bad).is_err(), "{bad:?} accepted");
        }
    }
}
