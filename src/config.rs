//! `ServerConfig`: every option the Rust side needs, validated once.
//!
//! Python (the CLI, `serve()`, `make_server()`) builds a dict of options; the
//! PyO3 boundary turns it into this struct. Nothing here depends on PyO3, so
//! the parsing of `--bind` strings is unit-tested in plain Rust.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocols::http1::Limits;

/// One listening address, as given to `--bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// `HOST:PORT` or `[IPv6]:PORT`; port 0 asks the OS for a free one.
    Tcp(SocketAddr),
    /// `unix:PATH`: a unix domain socket created (and later removed) by us.
    Unix(PathBuf),
    /// `fd://N`: an already bound, listening socket inherited from a parent
    /// (the master process, systemd socket activation).
    Fd(i32),
}

impl BindAddr {
    /// Parses one `--bind` value.
    ///
    /// Accepts `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` and `fd://N`. `localhost`
    /// is taken as `127.0.0.1`; an empty host (`:8000`) as `0.0.0.0`.
    ///
    /// # Errors
    /// `ConfigError` naming the value when it matches none of the forms.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError(format!("invalid bind address {value:?}: {why}"));
        if let Some(path) = value.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty unix socket path"));
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if let Some(fd) = value.strip_prefix("fd://") {
            let fd: i32 = fd.parse().map_err(|_| bad("fd must be a number"))?;
            return if fd >= 0 {
                Ok(BindAddr::Fd(fd))
            } else {
                Err(bad("negative fd"))
            };
        }
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("port must be 0-65535"))?;
        let host = match host {
            "" => "0.0.0.0",
            "localhost" => "127.0.0.1",
            h => h
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(h),
        };
        let ip = host
            .parse()
            .map_err(|_| bad("host must be an IP address"))?;
        Ok(BindAddr::Tcp(SocketAddr::new(ip, port)))
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(addr) => write!(f, "{addr}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            BindAddr::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

/// A configuration value that is out of range or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The server's options, validated. Field docs give units and defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen. Default `127.0.0.1:8000`.
    pub binds: Vec<BindAddr>,
    /// Python threads calling the application; at least 1. Default 1.
    pub threads: usize,
    /// Idle time after which a keep-alive connection is closed. Default 5 s.
    pub keep_alive: Duration,
    /// Time a client gets to send a whole request head. Default 10 s.
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body; then 408. Default 30 s.
    pub body_timeout: Duration,
    /// Open connections per process; beyond it new ones wait in the backlog.
    /// Default 1000.
    pub max_connections: usize,
    /// Request-line and header limits (414 / 431). Defaults 8190 bytes,
    /// 100 fields, 8190 bytes per field, as gunicorn.
    pub limits: Limits,
    /// Largest request body accepted, bytes; beyond it 413. Default 1 GiB.
    pub max_body_size: u64,
    /// Request bodies up to this size stay in memory; larger ones go to a
    /// temporary file, bytes. Default 1 MiB.
    pub body_buffer_size: usize,
    /// Time requests in flight get to finish after a stop. Default 30 s.
    pub graceful_timeout: Duration,
    /// `listen()` backlog for sockets bound here. Default 2048.
    pub backlog: i32,
    /// `environ['wsgi.multiprocess']`. Default false.
    pub multiprocess: bool,
    /// `environ['wsgi.url_scheme']`. Default `http`.
    pub url_scheme: String,
    /// `environ['SCRIPT_NAME']`: the prefix the application is mounted at,
    /// without a trailing slash. Default empty (mounted at the root).
    pub script_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            binds: vec![BindAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8000)))],
            threads: 1,
            keep_alive: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1000,
            limits: Limits::default(),
            max_body_size: 1 << 30,
            body_buffer_size: 1 << 20,
            graceful_timeout: Duration::from_secs(30),
            backlog: 2048,
            multiprocess: false,
            url_scheme: "http".to_owned(),
            script_name: String::new(),
        }
    }
}

impl ServerConfig {
    /// Checks the values that have a range.
    ///
    /// # Errors
    /// `ConfigError` naming the first option out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.binds.is_empty() {
            return Err(ConfigError("at least one bind address is needed".into()));
        }
        if self.threads == 0 {
            return Err(ConfigError("threads must be at least 1".into()));
        }
        if self.max_connections == 0 {
            return Err(ConfigError("max_connections must be at least 1".into()));
        }
        if self.limits.max_request_line == 0 || self.limits.max_field_size == 0 {
            return Err(ConfigError("request limits must be positive".into()));
        }
        if self.backlog <= 0 {
            return Err(ConfigError("backlog must be positive".into()));
        }
        if self.script_name.ends_with('/') {
            return Err(ConfigError("script_name must not end with '/'".into()));
        }
        Ok(())
    }
}

/// Converts a number of seconds from the config into a `Duration`.
///
/// # Errors
/// `ConfigError` when `secs` is negative or not finite.
pub fn seconds(name: &str, secs: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| ConfigError(format!("{name} must be a non-negative number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_bind_form() {
        let tcp = |s: &str| BindAddr::Tcp(s.parse().unwrap());
        assert_eq!(
            BindAddr::parse("127.0.0.1:80").unwrap(),
            tcp("127.0.0.1:80")
        );
        assert_eq!(BindAddr::parse("[::1]:8000").unwrap(), tcp("[::1]:8000"));
        assert_eq!(BindAddr::parse(":8000").unwrap(), tcp("0.0.0.0:8000"));
        assert_eq!(BindAddr::parse("localhost:1").unwrap(), tcp("127.0.0.1:1"));
        assert_eq!(
            BindAddr::parse("unix:/tmp/s").unwrap(),
            BindAddr::Unix("/tmp/s".into())
        );
        assert_eq!(BindAddr::parse("fd://3").unwrap(), BindAddr::Fd(3));
    }

    #[test]
    fn rejects_malformed_binds() {
        for bad in [
            "",
            "8000",
            "host:port",
            "1.2.3.4:70000",
            "unix:",
            "fd://x",
            "fd://-1",
        ] {
            assert!(BindAddr::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn validates_ranges() {
        let cfg = ServerConfig {
            threads: 0,
            ..ServerConfig::default()
        };
        assert!(cfg.validate().is_err());
        assert!(ServerConfig::default().validate().is_ok());
        assert!(seconds("timeout", -1.0).is_err());
        assert_eq!(
            seconds("timeout", 1.5).unwrap(),
            Duration::from_millis(1500)
        );
    }
}
