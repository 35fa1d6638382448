//! TLS from the control plane to `https://` servers: the rustls
//! configuration of one server's `tls` setting (its CAs, else the system's;
//! its client certificate, if any), and what a failed handshake means, in
//! words an operator can act on.
//!
//! The configuration is made from the files' contents, read by the
//! controller with the catalog: nothing here reads a file but the system's
//! CA store, once. Host names and IP addresses are verified by rustls'
//! WebPKI verifier against the URL's host, which is also what SNI carries
//! (for a name; an IP address is not sent, as RFC 6066 says).

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, RootCertStore};

/// The contents (PEM) of one server's `tls` files, read with the catalog.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CAs its certificate must chain to, instead of the system's.
    pub ca: Option<String>,
    /// The certificate chain shown to a server that asks for one, and its key.
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl std::fmt::Debug for UpstreamTls {
    // The key must never reach a log line through a Debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Names what the files hold: equal settings share a client, and a
    /// rotated file is another setting.
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in [&self.ca, &self.client_cert, &self.client_key] {
            // The length first, so that no two settings hash alike.
            let text = part.as_deref().unwrap_or_default();
            h.update((part.is_some() as u64).to_le_bytes());
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
    }
}

/// The cryptography rustls uses: ring, which builds with a C compiler alone.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The system's CA certificates (where OpenSSL finds them: `SSL_CERT_FILE`,
/// `/etc/ssl/certs`), read once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                errors = ?found.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "no system CA certificates found: https servers without tls.ca_file will not be trusted (install ca-certificates, or set SSL_CERT_FILE)"
            );
        } else {
            tracing::debug!(added, ignored, "system CA certificates loaded");
        }
        Arc::new(roots)
    }))
}

/// The rustls configuration of a server with `tls` (`None`: the system's
/// CAs, no client certificate). Errors name the field at fault.
pub fn client_config(tls: Option<&UpstreamTls>) -> Result<rustls::ClientConfig, String> {
    let roots = match tls.and_then(|t| t.ca.as_deref()) {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(pem, "ca_file")? {
                roots.add(cert).map_err(|e| format!("tls.ca_file holds a certificate that is not a usable CA ({e})"))?;
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots);
    let mut config = match tls.map(|t| (&t.client_cert, &t.client_key)) {
        Some((Some(cert), Some(key))) => {
            let key =
                PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| "tls.client_key_file holds no PEM private key".to_string())?;
            builder
                .with_client_auth_cert(certificates(cert, "client_cert_file")?, key)
                .map_err(|e| format!("tls.client_key_file does not go with tls.client_cert_file ({e})"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // As reqwest offers by default: HTTP/2 when the server speaks it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.{field} is not valid PEM ({e})"))?;
    if certs.is_empty() {
        return Err(format!("tls.{field} holds no PEM certificate"));
    }
    Ok(certs)
}

/// What the server's TLS setting holds, for advice in errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setting {
    pub own_ca: bool,
    pub client_cert: bool,
}

impl Setting {
    pub fn of(tls: Option<&UpstreamTls>) -> Self {
        Setting { own_ca: tls.is_some_and(|t| t.ca.is_some()), client_cert: tls.is_some_and(|t| t.client_cert.is_some()) }
    }
}

/// How a TLS connection failed.
#[derive(Debug, PartialEq)]
pub enum Failure<'a> {
    /// rustls says why: a certificate it refused, an alert it received.
    Rustls(&'a rustls::Error),
    /// The server closed the connection without a word (no alert, no
    /// `close_notify`). Some servers refuse a client certificate so: the
    /// alert that says it never leaves them.
    ClosedSilently,
}

/// The TLS failure somewhere in `error`'s chain of causes, if it is one. An
/// I/O error hides its inner error from `source()`, so those are opened too.
pub fn failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<Failure<'a>> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(Failure::Rustls(found));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.get_ref().and_then(|inner| failure(inner)) {
                return Some(found);
            }
            // What rustls reports when the peer closes without `close_notify`.
            if io.kind() == std::io::ErrorKind::UnexpectedEof && io.to_string().contains("close_notify") {
                return Some(Failure::ClosedSilently);
            }
        }
        next = e.source();
    }
    None
}

/// Why the TLS connection with `shown` (the URL, without secrets) failed,
/// as a sentence saying what to do.
pub fn explain(failure: &Failure<'_>, shown: &str, setting: Setting) -> String {
    match failure {
        Failure::Rustls(e) => explain_rustls(e, shown, setting),
        Failure::ClosedSilently if !setting.client_cert => format!(
            "TLS: {shown} closed the connection without a word after the handshake; a server that requires a client certificate may do so: set servers[].tls.client_cert_file and client_key_file"
        ),
        Failure::ClosedSilently => {
            format!("TLS: {shown} closed the connection without a word after the handshake; did it refuse the client certificate of servers[].tls.client_cert_file?")
        }
    }
}

fn explain_rustls(error: &rustls::Error, shown: &str, setting: Setting) -> String {
    let cert = format!("TLS: the certificate of {shown}");
    let host = url::Url::parse(shown).ok().and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()));
    let host = host.unwrap_or_default();
    match error {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer if setting.own_ca => {
                format!("{cert} is not trusted (unknown issuer): no CA of servers[].tls.ca_file signed it")
            }
            CertificateError::UnknownIssuer => {
                format!("{cert} is not trusted (unknown issuer): set servers[].tls.ca_file to the CA that signed it")
            }
            CertificateError::NotValidForNameContext { presented, .. } => {
                let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
                format!(
                    "{cert} does not match host {host} (it is for {}): use a URL with one of those names, or a certificate for {host}",
                    names.join(", ")
                )
            }
            CertificateError::NotValidForName => format!("{cert} does not match host {host}"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!("{cert} has expired"),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("{cert} is not valid yet (is the clock right?)")
            }
            CertificateError::Revoked => format!("{cert} is revoked"),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!("{cert} is not one for a server (its extended key usage)")
            }
            other => format!("{cert} is not valid ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => {
            let refused_ours = matches!(
                alert,
                AlertDescription::CertificateRequired
                    | AlertDescription::BadCertificate
                    | AlertDescription::UnknownCA
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::AccessDenied
            );
            match (refused_ours, setting.client_cert) {
                (true, false) => format!(
                    "TLS: {shown} requires a client certificate ({alert:?} alert): set servers[].tls.client_cert_file and client_key_file"
                ),
                (true, true) => format!("TLS: {shown} refused the client certificate of servers[].tls.client_cert_file ({alert:?} alert)"),
                // OpenSSL servers of TLS 1.2 answer a missing client
                // certificate with a bare handshake failure.
                (false, false) if *alert == AlertDescription::HandshakeFailure => {
                    format!("TLS: {shown} refused the handshake (HandshakeFailure alert): does it require a client certificate?")
                }
                _ => format!("TLS: {shown} refused the handshake ({alert:?} alert)"),
            }
        }
        rustls::Error::InvalidMessage(_) => format!("TLS: {shown} did not answer in TLS (is it an http:// server?)"),
        other => format!("TLS: the handshake with {shown} failed ({other})"),
    }
}

/// A name as rustls reports it (`DnsName("a.example")`, `IpAddress(10.0.0.1)`),
/// as it is written in a URL.
fn plain_name(presented: &str) -> &str {
    let inner = ["DnsName(\"", "IpAddress(", "UniformResourceIdentifier(\""]
        .iter()
        .find_map(|p| presented.strip_prefix(p))
        .and_then(|rest| rest.strip_suffix(')'))
        .map(|rest| rest.trim_end_matches('"'));
    inner.unwrap_or(presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error as reqwest reports a failed handshake: rustls' error inside
    /// an I/O error inside the connector's error.
    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn check(error: rustls::Error, setting: Setting, expected: &str) {
        let wrapped = Wrapper(std::io::Error::new(std::io::ErrorKind::InvalidData, error));
        let found = failure(&wrapped).expect("the rustls error is found through the I/O error");
        assert_eq!(explain(&found, "https://127.0.0.1:8443/mcp", setting), expected);
    }

    #[test]
    fn handshake_failures_say_what_to_do() {
        let none = Setting::default();
        let ca = Setting { own_ca: true, client_cert: false };
        let mtls = Setting { own_ca: true, client_cert: true };
        let cert = |e| rustls::Error::InvalidCertificate(e);
        check(cert(CertificateError::UnknownIssuer), none, "TLS: the certificate of https://127.0.0.1:8443/mcp is not trusted (unknown issuer): set servers[].tls.ca_file to the CA that signed it");
        check(
            cert(CertificateError::UnknownIssuer),
            ca,
            "TLS: the certificate of https://127.0.0.1:8443/mcp is not trusted (unknown issuer): no CA of servers[].tls.ca_file signed it",
        );
        check(
            cert(CertificateError::NotValidForNameContext { expected: rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(), presented: vec!["DnsName(\"localhost\")".into(), "IpAddress(::1)".into()] }),
            ca,
            "TLS: the certificate of https://127.0.0.1:8443/mcp does not match host 127.0.0.1 (it is for localhost, ::1): use a URL with one of those names, or a certificate for 127.0.0.1",
        );
        check(cert(CertificateError::Expired), none, "TLS: the certificate of https://127.0.0.1:8443/mcp has expired");
        check(
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            ca,
            "TLS: https://127.0.0.1:8443/mcp requires a client certificate (CertificateRequired alert): set servers[].tls.client_cert_file and client_key_file",
        );
        check(
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            mtls,
            "TLS: https://127.0.0.1:8443/mcp refused the client certificate of servers[].tls.client_cert_file (UnknownCA alert)",
        );
        check(
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
            none,
            "TLS: https://127.0.0.1:8443/mcp refused the handshake (HandshakeFailure alert): does it require a client certificate?",
        );
        check(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            none,
            "TLS: https://127.0.0.1:8443/mcp did not answer in TLS (is it an http:// server?)",
        );
    }

    #[test]
    fn a_silent_close_may_be_a_refused_client_certificate() {
        // As rustls words it (`ConnectionCommon::read_tls`).
        let eof = Wrapper(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls",
        ));
        let shown = "https://h/sse";
        let closed = failure(&eof).unwrap();
        assert_eq!(closed, Failure::ClosedSilently);
        assert_eq!(
            explain(&closed, shown, Setting::default()),
            "TLS: https://h/sse closed the connection without a word after the handshake; a server that requires a client certificate may do so: set servers[].tls.client_cert_file and client_key_file"
        );
        assert!(explain(&closed, shown, Setting { own_ca: false, client_cert: true })
            .ends_with("did it refuse the client certificate of servers[].tls.client_cert_file?"));
    }

    #[test]
    fn errors_without_tls_are_not_taken_for_tls() {
        assert!(failure(&Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))).is_none());
        assert!(failure(&Wrapper(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))).is_none(), "an end of file that is not TLS's");
    }

    #[test]
    fn settings_are_checked_when_made() {
        let config = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| {
            client_config(Some(&UpstreamTls { ca: ca.map(Into::into), client_cert: cert.map(Into::into), client_key: key.map(Into::into) }))
                .map(|_| ())
        };
        assert_eq!(config(Some("not pem"), None, None), Err("tls.ca_file holds no PEM certificate".into()));
        assert_eq!(
            config(None, Some("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"), Some("nothing")),
            Err("tls.client_key_file holds no PEM private key".into())
        );
        assert!(client_config(None).is_ok(), "the system's CAs, whatever their number");
    }

    #[test]
    fn a_setting_is_named_by_what_its_files_hold() {
        let a = UpstreamTls { ca: Some("x".into()), ..Default::default() };
        let b = UpstreamTls { client_cert: Some("x".into()), ..Default::default() };
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), UpstreamTls { ca: Some("y".into()), ..Default::default() }.digest());
    }
}
