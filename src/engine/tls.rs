//! TLS on the engine's connections (rustls, with the ring crypto provider).
//!
//! Owns loading the certificate chain and the private key from PEM files (an encrypted
//! PKCS#8 key with its password), the client-certificate policy (`--ssl-cert-reqs`,
//! `--ssl-ca-certs`), the protocol versions and TLS 1.2 cipher suites, and the handshake
//! itself, on the engine's threads and bounded by the header-read timeout. Errors name the
//! file and the reason. Must not: hold the GIL, or let one connection's failed handshake
//! touch any other connection.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use pkcs8::der::pem;
use pkcs8::EncryptedPrivateKeyInfo;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::Error;
use crate::handoff::TlsInfo;
use x509_cert::der::Decode;

/// What TLS is set up from: the `--ssl-*` options.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub certfile: String,
    pub keyfile: String,
    pub password: Option<String>,
    /// 0: no client certificate asked, 1: asked and checked if given, 2: required.
    pub cert_reqs: u8,
    pub ca_certs: Option<String>,
    /// OpenSSL-style list for TLS 1.2 suites (`TLSv1`, `DEFAULT`, `ALL` for all of them).
    pub ciphers: String,
    /// "1.2" and/or "1.3".
    pub versions: Vec<String>,
    /// The ALPN protocols offered, most wanted first (`h2`, `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
}

/// TLS for the engine's connections: the settings, and the configuration loaded from them,
/// which `reload` replaces (certificate renewal) while handshakes go on.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<Loaded>>,
}

/// One loading of the files: what handshakes use until the next reload.
struct Loaded {
    acceptor: TlsAcceptor,
    /// The leaf certificate as PEM, for the `tls` scope extension.
    server_cert: String,
}

impl Tls {
    /// Loads the files and builds the rustls configuration; the error names what failed.
    pub fn load(s: &TlsSettings) -> Result<Tls, Error> {
        Ok(Tls {
            current: RwLock::new(Arc::new(Loaded::load(s)?)),
            settings: s.clone(),
        })
    }

    /// Loads the files again: new handshakes use what they hold now, connections already
    /// open go on with what they agreed. On failure the previous configuration stays.
    pub fn reload(&self) -> Result<(), Error> {
        let loaded = Arc::new(Loaded::load(&self.settings)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// The certificate and key files, for log lines.
    pub fn files(&self) -> (&str, &str) {
        (&self.settings.certfile, &self.settings.keyfile)
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Loaded {
    fn load(s: &TlsSettings) -> Result<Loaded, Error> {
        let certs = load_certs(&s.certfile, "--ssl-certfile")?;
        let server_cert = to_pem(&certs[0]);
        let key = load_key(&s.keyfile, s.password.as_deref())?;
        let provider = Arc::new(provider(&s.ciphers)?);
        let versions = versions(&s.versions)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| Error::Tls(format!("--ssl-ciphers / --ssl-version: {e}")))?;
        let builder = match s.cert_reqs {
            0 => builder.with_no_client_auth(),
            reqs => {
                let path = s.ca_certs.as_deref().ok_or_else(|| {
                    Error::Tls(
                        "--ssl-cert-reqs 1 or 2 asks clients for certificates: give the CAs that sign them with --ssl-ca-certs".into(),
                    )
                })?;
                let mut roots = RootCertStore::empty();
                for cert in load_certs(path, "--ssl-ca-certs")? {
                    roots.add(cert).map_err(|e| {
                        Error::Tls(format!(
                            "--ssl-ca-certs {path}: not a usable CA certificate ({e})"
                        ))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if reqs == 1 {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| Error::Tls(format!("--ssl-ca-certs {path}: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            Error::Tls(format!(
                "--ssl-certfile {} and --ssl-keyfile {}: {e} (does the key belong to the certificate?)",
                s.certfile, s.keyfile
            ))
        })?;
        config.alpn_protocols = s.alpn.clone();
        Ok(Loaded {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            server_cert,
        })
    }
}

impl Tls {
    /// Whether the handshake chose HTTP/2 (ALPN `h2`).
    pub(super) fn chose_http2(conn: &rustls::ServerConnection) -> bool {
        conn.alpn_protocol() == Some(b"h2")
    }

    /// What the ASGI `tls` extension reports about a connection whose handshake is done.
    pub(super) fn connection_info(&self, conn: &rustls::ServerConnection) -> TlsInfo {
        let chain: Vec<String> = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(to_pem)
            .collect();
        let client_cert_name = conn.peer_certificates().and_then(|certs| {
            let leaf = x509_cert::Certificate::from_der(certs.first()?).ok()?;
            Some(leaf.tbs_certificate.subject.to_string())
        });
        TlsInfo {
            server_cert: Some(self.current().server_cert.clone()),
            client_cert_chain: chain,
            client_cert_name,
            tls_version: conn.protocol_version().map(u16::from),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| u16::from(s.suite())),
        }
    }

    /// The handshake, within `timeout`; `None` when the client failed it or was too slow
    /// (plain HTTP on the TLS port, an aborted or stalled handshake).
    pub(super) async fn handshake<S>(&self, stream: S, timeout: Duration) -> Option<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = self.current().acceptor.clone();
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// A certificate as PEM text.
fn to_pem(cert: &CertificateDer<'_>) -> String {
    pem::encode_string("CERTIFICATE", pem::LineEnding::LF, cert).unwrap_or_default()
}

fn read(path: &str, option: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tls(format!("{option} {path}: {e}")))
}

/// The PEM blocks of a file: (label, DER bytes), in order.
fn pem_blocks(data: &[u8], path: &str, option: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let text = std::str::from_utf8(data)
        .map_err(|_| Error::Tls(format!("{option} {path}: not a PEM file (not text)")))?;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end) = from.find("-----END ") else {
            break;
        };
        // The block ends with the five dashes that close its END line.
        let label_at = end + "-----END ".len();
        let close = from[label_at..]
            .find("-----")
            .map_or(from.len(), |i| label_at + i + "-----".len());
        let block = &from[..close];
        let (label, der) = pem::decode_vec(block.as_bytes()).map_err(|e| {
            Error::Tls(format!(
                "{option} {path}: a PEM block could not be read ({e})"
            ))
        })?;
        blocks.push((label.to_string(), der));
        rest = &from[close..];
    }
    Ok(blocks)
}

fn load_certs(path: &str, option: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = pem_blocks(&read(path, option)?, path, option)?
        .into_iter()
        .filter(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{option} {path}: no certificate in the file (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")"
        )));
    }
    Ok(certs)
}

fn load_key(path: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, Error> {
    let option = "--ssl-keyfile";
    for (label, der) in pem_blocks(&read(path, option)?, path, option)? {
        return match label.as_str() {
            "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(der.into())),
            "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(der.into())),
            "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(der.into())),
            "ENCRYPTED PRIVATE KEY" => {
                let password = password.ok_or_else(|| {
                    Error::Tls(format!(
                        "{option} {path}: the key is encrypted; give its password with --ssl-keyfile-password"
                    ))
                })?;
                let info = EncryptedPrivateKeyInfo::try_from(der.as_slice()).map_err(|e| {
                    Error::Tls(format!("{option} {path}: unreadable encrypted key ({e})"))
                })?;
                let plain = info.decrypt(password).map_err(|e| {
                    Error::Tls(format!(
                        "{option} {path}: wrong password, or an encryption this server cannot read ({e}); PKCS#8 with PBES2 (openssl pkcs8 -topk8 -v2 aes-256-cbc) is supported"
                    ))
                })?;
                Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    plain.as_bytes().to_vec(),
                )))
            }
            "CERTIFICATE" => continue,
            other => Err(Error::Tls(format!(
                "{option} {path}: unsupported key type \"{other}\" (PKCS#8, PKCS#1 RSA or SEC1 EC keys in PEM are)"
            ))),
        };
    }
    Err(Error::Tls(format!(
        "{option} {path}: no private key in the file (expected a PEM block such as \"-----BEGIN PRIVATE KEY-----\")"
    )))
}

fn versions(names: &[String]) -> Result<Vec<&'static SupportedProtocolVersion>, Error> {
    let mut versions = Vec::new();
    for name in names {
        versions.push(match name.as_str() {
            "1.3" => &rustls::version::TLS13,
            "1.2" => &rustls::version::TLS12,
            other => {
                return Err(Error::Tls(format!(
                    "TLS version {other} is not supported (1.2 and 1.3 are)"
                )))
            }
        });
    }
    Ok(versions)
}

/// The ring provider with the TLS 1.2 suites `--ssl-ciphers` allows (TLS 1.3 suites are
/// not chosen by this list, as with OpenSSL's cipher string).
fn provider(ciphers: &str) -> Result<CryptoProvider, Error> {
    let mut provider = ring::default_provider();
    let spec = ciphers.trim();
    if matches!(spec, "" | "TLSv1" | "TLSv1.2" | "DEFAULT" | "ALL" | "HIGH") {
        return Ok(provider);
    }
    let wanted: Vec<String> = spec
        .split([':', ',', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_uppercase().replace('-', "_"))
        .collect();
    provider.cipher_suites.retain(|suite| {
        let name = format!("{:?}", suite.suite());
        suite.version() == &rustls::version::TLS13
            || wanted
                .iter()
                .any(|w| name == *w || openssl_name(&name) == *w)
    });
    if !provider
        .cipher_suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS12)
    {
        return Err(Error::Tls(format!(
            "--ssl-ciphers {spec:?}: no TLS 1.2 cipher suite this server has matches (names such as ECDHE-RSA-AES128-GCM-SHA256 or TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
        )));
    }
    Ok(provider)
}

/// OpenSSL's name of an IANA TLS 1.2 suite name, with `_` for `-` (how `wanted` is kept).
fn openssl_name(iana: &str) -> String {
    iana.trim_start_matches("TLS_")
        .replace("_WITH_", "_")
        .replace("AES_128", "AES128")
        .replace("AES_256", "AES256")
        .replace("CHACHA20_POLY1305_SHA256", "CHACHA20_POLY1305")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_names_match_iana_names() {
        assert_eq!(
            openssl_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "ECDHE_RSA_AES128_GCM_SHA256"
        );
        assert_eq!(
            openssl_name("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
            "ECDHE_ECDSA_CHACHA20_POLY1305"
        );
    }

    #[test]
    fn a_cipher_list_keeps_tls13_and_the_named_tls12_suites() {
        let chosen = provider("ECDHE-RSA-AES128-GCM-SHA256").unwrap();
        let tls12: Vec<_> = chosen
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .collect();
        assert_eq!(tls12.len(), 1);
        assert!(chosen
            .cipher_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13));
        assert!(provider("NOT-A-CIPHER").is_err());
    }

    #[test]
    fn pem_blocks_are_found_in_order() {
        let text = b"junk\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
            -----BEGIN PRIVATE KEY-----\nAwQF\n-----END PRIVATE KEY-----\n";
        let blocks = pem_blocks(text, "f", "--x").unwrap();
        let labels: Vec<_> = blocks.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["CERTIFICATE", "PRIVATE KEY"]);
        assert_eq!(blocks[0].1, vec![0, 1, 2]);
    }
}
