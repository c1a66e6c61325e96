//! `ServerConfig`: every option the Rust side needs, validated once.
//!
//! Python (the CLI, `serve()`, `make_server()`) builds a dict of options; the
//! PyO3 boundary turns it into this struct. Nothing here depends on PyO3, so
//! the parsing of `--bind` strings is unit-tested in plain Rust.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub mod error;
pub mod tls;

pub use error::ConfigError;
pub use tls::{CertReqs, TlsOptions, TlsVersion};

use crate::middleware::options::MiddlewareConfig;
use crate::protocols::http1::Limits;
use crate::protocols::HttpVersions;
use crate::server::tls::Tls;

/// The forms `--bind` accepts, for error messages.
pub const BIND_FORMS: &str = "HOST:PORT, [IPv6]:PORT, :PORT (all IPv4 interfaces), HOST \
     (port 8000), unix:PATH or fd://N, each optionally after uwsgi:// or fcgi:// \
     (nginx's uwsgi_pass, fastcgi_pass)";

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (and HTTP/2, by ALPN or prior knowledge): the default.
    Http,
    /// The uwsgi binary protocol (nginx's `uwsgi_pass`): `uwsgi://ADDRESS`.
    Uwsgi,
    /// FastCGI, responder role (nginx's `fastcgi_pass`, Apache's
    /// `mod_proxy_fcgi`): `fcgi://ADDRESS`.
    FastCgi,
}

impl Protocol {
    /// The `--bind` prefix that selects this protocol (`""` for HTTP).
    pub fn prefix(self) -> &'static str {
        match self {
            Protocol::Http => "",
            Protocol::Uwsgi => "uwsgi://",
            Protocol::FastCgi => "fcgi://",
        }
    }
}

/// One `--bind` value: the address and the protocol spoken there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// What the listener speaks.
    pub protocol: Protocol,
    /// Where it listens.
    pub addr: BindAddr,
}

impl Bind {
    /// Parses one `--bind` value: `[uwsgi://|fcgi://]ADDRESS`, where ADDRESS
    /// is one of [`BIND_FORMS`] ([`BindAddr::parse`]).
    ///
    /// # Errors
    /// `ConfigError` naming the value, why it is wrong, and the accepted forms.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let text = value.trim();
        for protocol in [Protocol::Uwsgi, Protocol::FastCgi] {
            if let Some(rest) = text.strip_prefix(protocol.prefix()) {
                let addr = BindAddr::parse(rest).map_err(|e| {
                    ConfigError(e.0.replacen(&format!("{rest:?}"), &format!("{value:?}"), 1))
                })?;
                return Ok(Bind { protocol, addr });
            }
        }
        BindAddr::parse(value).map(|addr| Bind {
            protocol: Protocol::Http,
            addr,
        })
    }

    /// The same protocol on an inherited socket `fd://N`: how a worker is
    /// told to serve a socket its master bound.
    pub fn on_fd(&self, fd: i32) -> Bind {
        Bind {
            protocol: self.protocol,
            addr: BindAddr::Fd(fd),
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.protocol.prefix(), self.addr)
    }
}

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
    /// Parses one `--bind` value: the only address parser (Python calls it
    /// through `_ferrowsgi.parse_bind`).
    ///
    /// Accepts [`BIND_FORMS`]; `unix://PATH` and a leading `tcp://` too, as
    /// gunicorn does. `localhost` is `127.0.0.1`; another host name is
    /// resolved now (its first IPv4 address, else its first address); an
    /// empty host (`:8000`) is `0.0.0.0`, and a host without a port gets 8000.
    ///
    /// # Errors
    /// `ConfigError` naming the value, why it is wrong, and the accepted forms.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let text = value.trim();
        let bad = |why: &str| {
            ConfigError(format!(
                "invalid address {value:?}: {why}; expected {BIND_FORMS}"
            ))
        };
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("no socket path after unix:"));
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if let Some(fd) = text.strip_prefix("fd://") {
            return match fd.parse::<i32>() {
                Ok(fd) if fd >= 0 => Ok(BindAddr::Fd(fd)),
                _ => Err(bad("fd://N takes a file descriptor number")),
            };
        }
        let text = text.strip_prefix("tcp://").unwrap_or(text);
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(bad(&format!("unknown scheme {scheme:?}://")));
        }
        let (host, port) = split_host_port(text).map_err(|why| bad(&why))?;
        resolve(host, port)
            .map(BindAddr::Tcp)
            .map_err(|why| bad(&why))
    }
}

/// `HOST:PORT`, `[IPv6]:PORT`, `HOST` or `:PORT` into host (brackets
/// removed, `0.0.0.0` when empty) and port (8000 when absent).
fn split_host_port(text: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs a closing ']'")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?),
            ),
        }
    } else if text.matches(':').count() > 1 {
        return Err("put an IPv6 address in brackets, such as [::1]:8000".to_owned());
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => 8000,
        Some(p) => p
            .parse()
            .map_err(|_| format!("{p:?} is not a port number (0-65535)"))?,
    };
    Ok((if host.is_empty() { "0.0.0.0" } else { host }, port))
}

/// The socket address of `host`: an IP address as it is, `localhost` as
/// 127.0.0.1, a name through the system resolver.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "{host:?} is not an IP address (for a port alone write :{host})"
        ));
    }
    let name_like = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !name_like {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{host:?} has no address"))
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

/// Peers trusted for what they say about the client: the PROXY protocol
/// header (`--proxy-allow-from`) or forwarded headers
/// (`--forwarded-allow-ips`). Entries: an IP address, a network in CIDR
/// form (`10.0.0.0/8`), `unix` (clients of a unix socket) or `*` (anyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    any: bool,
    unix: bool,
    networks: Vec<ipnet::IpNet>,
}

impl TrustList {
    /// Parses the entries of one option.
    ///
    /// # Errors
    /// `ConfigError` naming an entry that is none of the forms.
    pub fn parse(entries: &[String]) -> Result<Self, ConfigError> {
        let mut list = TrustList::default();
        for entry in entries.iter().map(|e| e.trim()) {
            match entry {
                "*" => list.any = true,
                "unix" => list.unix = true,
                _ => list.networks.push(match entry.parse::<IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => entry.parse().map_err(|_| {
                        ConfigError(format!(
                            "{entry:?} is not an IP address, a network (10.0.0.0/8), 'unix' or '*'"
                        ))
                    })?,
                }),
            }
        }
        Ok(list)
    }

    /// Whether `peer` (`None`: a unix socket client) is trusted.
    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            _ if self.any => true,
            None => self.unix,
            Some(ip) => {
                let ip = ip.to_canonical(); // ::ffff:127.0.0.1 is 127.0.0.1
                self.networks.iter().any(|n| n.contains(&ip))
            }
        }
    }
}

/// The keys of the options dict `_ferrowsgi.Server` takes: each one must be
/// present (the options table in `python/ferrowsgi/options.py` holds the
/// defaults, so there is one set of them) and no other is accepted.
pub const KEYS: [&str; 35] = [
    "bind",
    "backlog",
    "unix_socket_mode",
    "threads",
    "max_connections",
    "graceful_timeout",
    "keep_alive",
    "header_timeout",
    "body_timeout",
    "max_body_size",
    "body_buffer_size",
    "limit_request_line",
    "limit_request_fields",
    "limit_request_field_size",
    "max_requests",
    "url_scheme",
    "script_name",
    "multiprocess",
    "forwarded_allow_ips",
    "proxy_protocol",
    "proxy_allow_from",
    "http",
    "certfile",
    "keyfile",
    "ca_certs",
    "cert_reqs",
    "ssl_min_version",
    "static",
    "static_max_age",
    "compress",
    "forward",
    "forward_timeout",
    "forward_fail_timeout",
    "max_queue",
    "metrics_bind",
];

/// The server's options, validated. The options table documents each one.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (`bind`).
    pub binds: Vec<Bind>,
    /// Python threads calling the application; at least 1.
    pub threads: usize,
    /// Idle time after which a keep-alive connection is closed.
    pub keep_alive: Duration,
    /// Time a client gets to send a whole request head.
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body; then 408.
    pub body_timeout: Duration,
    /// Open connections per process; beyond it new ones wait in the backlog.
    pub max_connections: usize,
    /// Request-line and header limits (414 / 431), bytes and fields.
    pub limits: Limits,
    /// Largest request body accepted, bytes; beyond it 413.
    pub max_body_size: u64,
    /// Request bodies up to this size stay in memory; larger ones go to a
    /// temporary file, bytes.
    pub body_buffer_size: usize,
    /// Time requests in flight get to finish after a stop.
    pub graceful_timeout: Duration,
    /// `listen()` backlog for sockets bound here.
    pub backlog: i32,
    /// Permission bits of the unix socket files bound here.
    pub unix_socket_mode: u32,
    /// Requests after which the server stops by itself (graceful, as on
    /// `shutdown()`); 0 = never.
    pub max_requests: u64,
    /// `environ['wsgi.multiprocess']`.
    pub multiprocess: bool,
    /// `environ['wsgi.url_scheme']`.
    pub url_scheme: String,
    /// `environ['SCRIPT_NAME']`: the prefix the application is mounted at,
    /// without a trailing slash; empty when mounted at the root.
    pub script_name: String,
    /// Peers whose `X-Forwarded-For`/`-Proto` and `Forwarded` headers are
    /// believed (`middleware::forwarded`).
    pub forwarded_allow_ips: TrustList,
    /// Whether every connection starts with a PROXY protocol header
    /// (`server::proxy`).
    pub proxy_protocol: bool,
    /// Peers allowed to send a PROXY protocol header.
    pub proxy_allow_from: TrustList,
    /// Which HTTP versions HTTP listeners speak (`--http auto|1|2`).
    pub http: HttpVersions,
    /// TLS on every HTTP listener (`--certfile` and friends), its files
    /// read and checked; `None`: plain HTTP.
    pub tls: Option<Tls>,
    /// The built-in middleware: static files, compression, forwarding.
    pub middleware: MiddlewareConfig,
    /// Requests that may wait for a Python thread; one more gets 503 at
    /// once. 0: no limit.
    pub max_queue: usize,
    /// Where `/metrics` is served (an HTTP address), if anywhere.
    pub metrics_bind: Option<Bind>,
}

impl ServerConfig {
    /// A configuration for unit tests and micro-benchmarks: one TCP address,
    /// one thread. Not the server's defaults: those are the options table's.
    pub fn example() -> Self {
        ServerConfig {
            binds: vec![Bind {
                protocol: Protocol::Http,
                addr: BindAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8000))),
            }],
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
            unix_socket_mode: 0o660,
            max_requests: 0,
            multiprocess: false,
            url_scheme: "http".to_owned(),
            script_name: String::new(),
            forwarded_allow_ips: TrustList::default(),
            proxy_protocol: false,
            proxy_allow_from: TrustList::default(),
            http: HttpVersions::Auto,
            tls: None,
            middleware: MiddlewareConfig::default(),
            max_queue: 0,
            metrics_bind: None,
        }
    }

    /// Every option as `key=value`, comma-separated, in [`KEYS`] order: the
    /// debug log shows what the server really runs with.
    pub fn describe(&self) -> String {
        let binds: Vec<String> = self.binds.iter().map(ToString::to_string).collect();
        let values = [
            binds.join(","),
            self.backlog.to_string(),
            format!("{:#o}", self.unix_socket_mode),
            self.threads.to_string(),
            self.max_connections.to_string(),
            self.graceful_timeout.as_secs_f64().to_string(),
            self.keep_alive.as_secs_f64().to_string(),
            self.header_timeout.as_secs_f64().to_string(),
            self.body_timeout.as_secs_f64().to_string(),
            self.max_body_size.to_string(),
            self.body_buffer_size.to_string(),
            self.limits.max_request_line.to_string(),
            self.limits.max_fields.to_string(),
            self.limits.max_field_size.to_string(),
            self.max_requests.to_string(),
            self.url_scheme.clone(),
            format!("{:?}", self.script_name),
            self.multiprocess.to_string(),
            format!("{:?}", self.forwarded_allow_ips),
            self.proxy_protocol.to_string(),
            format!("{:?}", self.proxy_allow_from),
            self.http.as_str().to_owned(),
        ];
        let tls = self.tls.as_ref().map(|t| &t.options);
        let path = |p: Option<&PathBuf>| p.map_or("none".to_owned(), |p| format!("{p:?}"));
        let values = values.into_iter().chain([
            path(tls.map(|t| &t.certfile)),
            path(tls.map(|t| &t.keyfile)),
            path(tls.and_then(|t| t.ca_certs.as_ref())),
            match tls.map(|t| t.cert_reqs) {
                None | Some(CertReqs::None) => "none",
                Some(CertReqs::Optional) => "optional",
                Some(CertReqs::Required) => "required",
            }
            .to_owned(),
            match tls.map(|t| t.min_version) {
                Some(TlsVersion::Tls13) => "1.3",
                _ => "1.2",
            }
            .to_owned(),
        ]);
        let values = values.chain(self.middleware.describe()).chain([
            self.max_queue.to_string(),
            self.metrics_bind
                .as_ref()
                .map_or("none".to_owned(), ToString::to_string),
        ]);
        KEYS.iter()
            .zip(values)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

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
        assert_eq!(BindAddr::parse("127.0.0.1").unwrap(), tcp("127.0.0.1:8000"));
        assert_eq!(BindAddr::parse("tcp://[::1]:9").unwrap(), tcp("[::1]:9"));
        assert_eq!(
            BindAddr::parse("unix:///run/a.sock").unwrap(),
            BindAddr::Unix("/run/a.sock".into())
        );
    }

    #[test]
    fn parses_protocol_schemes() {
        let bind = |s: &str| Bind::parse(s).unwrap();
        assert_eq!(bind("uwsgi://127.0.0.1:3031").protocol, Protocol::Uwsgi);
        assert_eq!(
            bind("fcgi://unix:/run/a").addr,
            BindAddr::Unix("/run/a".into())
        );
        assert_eq!(bind("fcgi://unix:/run/a").to_string(), "fcgi://unix:/run/a");
        assert_eq!(
            bind("uwsgi://[::1]:9").on_fd(4).to_string(),
            "uwsgi://fd://4"
        );
        assert_eq!(bind("uwsgi://fd://4").addr, BindAddr::Fd(4));
        assert_eq!(bind("127.0.0.1:80").protocol, Protocol::Http);
        let err = Bind::parse("uwsgi://[::1").unwrap_err();
        assert!(err.0.contains("\"uwsgi://[::1\""), "{err}");
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
            "http2://127.0.0.1:3031",
            "uwsgi://",
            "fcgi://nowhere:port",
            "::1:80",
            "a b:80",
        ] {
            let err = Bind::parse(bad).expect_err(bad);
            assert!(err.0.contains("unix:PATH"), "{err} lists no forms");
        }
    }

    #[test]
    fn trust_lists() {
        let list = |e: &[&str]| {
            TrustList::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let local = list(&["127.0.0.1", "::1", "unix"]);
        assert!(local.allows(ip("127.0.0.1")) && local.allows(ip("::ffff:127.0.0.1")));
        assert!(local.allows(None) && !local.allows(ip("10.0.0.1")));
        assert!(list(&["10.0.0.0/8"]).allows(ip("10.9.8.7")));
        assert!(!list(&["10.0.0.0/8"]).allows(None));
        assert!(list(&["*"]).allows(ip("192.0.2.1")) && list(&["*"]).allows(None));
        assert!(TrustList::parse(&["nope".to_owned()]).is_err());
    }

    #[test]
    fn validates_ranges() {
        let cfg = ServerConfig {
            threads: 0,
            ..ServerConfig::example()
        };
        assert!(cfg.validate().is_err());
        assert!(ServerConfig::example().validate().is_ok());
        assert!(seconds("timeout", -1.0).is_err());
        assert_eq!(
            seconds("timeout", 1.5).unwrap(),
            Duration::from_millis(1500)
        );
    }
}
