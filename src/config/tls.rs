//! The TLS options (`--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs`,
//! `--ssl-min-version`), checked for consistency; `server::tls` reads the
//! files and builds the rustls configuration from them.

use std::path::PathBuf;

use super::error::ConfigError;

/// Whether, and how, clients present certificates (`--cert-reqs`; the
/// names of Python's `ssl.CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertReqs {
    /// No client certificate is asked for.
    None,
    /// One is asked for; a client without one is served, one with a
    /// certificate that does not verify against `--ca-certs` is refused.
    Optional,
    /// A certificate that verifies against `--ca-certs` is required
    /// (RFC 8446 §4.3.2, RFC 5246 §7.4.4).
    Required,
}

/// The oldest TLS version accepted (`--ssl-min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246) and 1.3.
    Tls12,
    /// TLS 1.3 (RFC 8446) only.
    Tls13,
}

/// The TLS options, checked for consistency (the files are read by
/// `server::tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the server's certificate chain, leaf first (`--certfile`).
    pub certfile: PathBuf,
    /// PEM file with its private key: PKCS#8, PKCS#1 RSA or SEC1 EC (`--keyfile`).
    pub keyfile: PathBuf,
    /// PEM file with the CAs client certificates are verified against (`--ca-certs`).
    pub ca_certs: Option<PathBuf>,
    /// Client certificates: none, optional or required.
    pub cert_reqs: CertReqs,
    /// The oldest protocol version accepted.
    pub min_version: TlsVersion,
}

impl TlsOptions {
    /// The TLS options from the options' values: `None` (plain HTTP) when
    /// neither `certfile` nor `keyfile` is given. `cert_reqs` is `none`,
    /// `optional` or `required`; `min_version` `1.2` or `1.3`.
    ///
    /// # Errors
    /// `ConfigError` when only one of certfile and keyfile is given, when
    /// ca-certs or cert-reqs is given without them, when cert-reqs asks for
    /// client certificates without ca-certs, or for a value not listed.
    pub fn from_values(
        certfile: Option<&str>,
        keyfile: Option<&str>,
        ca_certs: Option<&str>,
        cert_reqs: &str,
        min_version: &str,
    ) -> Result<Option<Self>, ConfigError> {
        let cert_reqs = match cert_reqs {
            "none" => CertReqs::None,
            "optional" => CertReqs::Optional,
            "required" => CertReqs::Required,
            other => {
                return Err(ConfigError(format!(
                    "--cert-reqs: expected none, optional or required, got {other:?}"
                )))
            }
        };
        let min_version = match min_version {
            "1.2" => TlsVersion::Tls12,
            "1.3" => TlsVersion::Tls13,
            other => {
                return Err(ConfigError(format!(
                    "--ssl-min-version: expected 1.2 or 1.3, got {other:?}"
                )))
            }
        };
        let (certfile, keyfile) = match (certfile, keyfile) {
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => {
                return Err(ConfigError(
                    "--certfile needs --keyfile (the certificate's private key)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "--keyfile needs --certfile (the certificate it belongs to)".into(),
                ))
            }
            (None, None) if ca_certs.is_some() || cert_reqs != CertReqs::None => {
                return Err(ConfigError(
                    "--ca-certs and --cert-reqs need TLS: give --certfile and --keyfile".into(),
                ))
            }
            (None, None) => return Ok(None),
        };
        if cert_reqs != CertReqs::None && ca_certs.is_none() {
            return Err(ConfigError(
                "--cert-reqs optional or required needs --ca-certs (the CAs client \
                 certificates are verified against)"
                    .into(),
            ));
        }
        Ok(Some(TlsOptions {
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            ca_certs: ca_certs.map(PathBuf::from),
            cert_reqs,
            min_version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_come_in_consistent_sets() {
        let from = |c, k, ca, reqs, v| TlsOptions::from_values(c, k, ca, reqs, v);
        assert_eq!(from(None, None, None, "none", "1.2"), Ok(None));
        let tls = from(
            Some("c.pem"),
            Some("k.pem"),
            Some("ca.pem"),
            "optional",
            "1.3",
        )
        .unwrap()
        .unwrap();
        assert_eq!(tls.cert_reqs, CertReqs::Optional);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.ca_certs, Some(PathBuf::from("ca.pem")));
        for (c, k, ca, reqs, v, says) in [
            (
                Some("c"),
                None,
                None,
                "none",
                "1.2",
                "--certfile needs --keyfile",
            ),
            (
                None,
                Some("k"),
                None,
                "none",
                "1.2",
                "--keyfile needs --certfile",
            ),
            (None, None, Some("ca"), "none", "1.2", "need TLS"),
            (None, None, None, "required", "1.2", "need TLS"),
            (
                Some("c"),
                Some("k"),
                None,
                "required",
                "1.2",
                "needs --ca-certs",
            ),
            (
                Some("c"),
                Some("k"),
                None,
                "sometimes",
                "1.2",
                "--cert-reqs",
            ),
            (
                Some("c"),
                Some("k"),
                None,
                "none",
                "1.1",
                "--ssl-min-version",
            ),
        ] {
            let err = from(c, k, ca, reqs, v).unwrap_err();
            assert!(err.0.contains(says), "{err}");
        }
    }
}
