//! TLS for every listener roster serves (admission webhook, identity pages, the API server's
//! token and authorization webhooks): certificates — made here with rcgen, or read from files —
//! and the accept loop that serves an axum router over rustls, optionally only to clients with a
//! certificate of a given CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod serve;
pub use serve::{ClientAddr, listen, serve};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("unusable TLS configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Generate(_) => "CertificateFailed",
            Error::Read { .. } | Error::Pem { .. } => "CertificateUnreadable",
            Error::Config(_) => "TlsConfigInvalid",
            Error::Listen { .. } => "ListenFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn config_err(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Clone)]
pub struct Certificates {
    pub ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

// The private key must never reach a log or a panic message.
impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// A fresh CA and a serving certificate for `names` (DNS names or IP addresses).
    pub fn generate(names: &[String]) -> Result<Certificates> {
        Certificates::issue("roster webhook", names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A fresh CA and a client certificate named `common_name` (for the API server's calls to
    /// roster's token and authorization webhooks). The CA's key is dropped: the CA can vouch for
    /// this one certificate and never for another.
    pub fn generate_client(common_name: &str) -> Result<Certificates> {
        Certificates::issue(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        common_name: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Certificates> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, format!("{common_name} CA"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name
            .push(DnType::CommonName, common_name);
        leaf.extended_key_usages = vec![usage];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok(Certificates {
            ca_pem: ca_cert.pem(),
            cert_der: leaf_cert.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        })
    }

    /// A certificate from PEM text: leaf, key, and the CA that signed it.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Certificates> {
        use rustls::pki_types::pem::PemObject;
        let bad = |what: String| Error::Config(what);
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| bad(format!("not a PEM private key: {e}")))?;
        Ok(Certificates {
            ca_pem: ca_pem.into(),
            cert_der: cert_der.to_vec(),
            key_der: key_der.secret_der().to_vec(),
        })
    }

    /// A certificate made elsewhere (a file the operator or a test harness wrote): the leaf
    /// certificate and key in PEM, and the CA that signed it.
    pub fn from_pem_files(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Certificates> {
        use rustls::pki_types::pem::PemObject;
        fn pem_err<'a>(
            path: &'a Path,
            what: &'a str,
        ) -> impl FnOnce(rustls::pki_types::pem::Error) -> Error + 'a {
            move |e| Error::Pem {
                path: path.to_path_buf(),
                what: format!("not a PEM {what}: {e}"),
            }
        }
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(&read(cert)?)
            .map_err(pem_err(cert, "certificate"))?;
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(pem_err(key, "private key"))?;
        let ca_pem = match ca {
            Some(p) => String::from_utf8(read(p)?).map_err(|e| Error::Pem {
                path: p.to_path_buf(),
                what: e.to_string(),
            })?,
            None => String::new(),
        };
        Ok(Certificates {
            ca_pem,
            cert_der: cert_der.to_vec(),
            key_der: key_der.secret_der().to_vec(),
        })
    }

    /// The leaf certificate and key in PEM (to write them to files).
    pub fn leaf_pem(&self) -> (String, String) {
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        (
            pem("CERTIFICATE", &self.cert_der),
            pem("PRIVATE KEY", &self.key_der),
        )
    }

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        server_config(Arc::new(Serving::new(self)?), None)
    }

    /// A server that completes a handshake only with a client certificate signed by one of the
    /// CAs in `client_ca` (the API server's, for roster's webhooks): anyone else gets a TLS
    /// failure and not a byte of HTTP.
    pub fn server_config_requiring_clients(
        &self,
        client_ca: &Path,
    ) -> Result<Arc<rustls::ServerConfig>> {
        server_config(Arc::new(Serving::new(self)?), Some(client_ca))
    }

    /// Whether the leaf chains to `ca_pem` and is valid now for `name`, as a client would check
    /// it: a CA in a Secret that did not sign what roster serves is caught at start, not by
    /// the API server's first failed handshake.
    pub fn verify(&self, name: &str) -> Result<()> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca.map_err(config_err)?).map_err(config_err)?;
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(config_err)?;
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(config_err)?;
        verifier
            .verify_server_cert(
                &rustls::pki_types::CertificateDer::from(self.cert_der.clone()),
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(drop)
            .map_err(config_err)
    }

    fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>> {
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(self.key_der.clone()).map_err(config_err)?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(config_err)?;
        let cert = rustls::pki_types::CertificateDer::from(self.cert_der.clone());
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert],
            signer,
        )))
    }
}

/// A CA whose key is kept (in roster's own namespace), so that serving certificates can be
/// issued again before they expire while every client keeps trusting the same CA.
pub struct Authority {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority(<redacted>)")
    }
}

/// The CA's name: issuing again needs the very subject the CA certificate carries.
const AUTHORITY_NAME: &str = "roster CA";

fn authority_params() -> Result<CertificateParams> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, AUTHORITY_NAME);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca)
}

impl Authority {
    /// A new CA, valid for ten years.
    pub fn generate() -> Result<Authority> {
        let key = KeyPair::generate()?;
        let mut ca = authority_params()?;
        let now = time::OffsetDateTime::now_utc();
        ca.not_before = now - time::Duration::hours(1);
        ca.not_after = now + time::Duration::days(3650);
        let cert = ca.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority> {
        KeyPair::from_pem(key_pem)?;
        Ok(Authority {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        })
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A serving certificate for `names`, valid for `lifetime` from now.
    pub fn issue(&self, names: &[String], lifetime: std::time::Duration) -> Result<Certificates> {
        let issuer = Issuer::new(authority_params()?, KeyPair::from_pem(&self.key_pem)?);
        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name.push(DnType::CommonName, "roster");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        leaf.not_before = now - time::Duration::minutes(5);
        leaf.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Certificates {
            ca_pem: self.cert_pem.clone(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// The certificate a listener serves, replaceable while it runs: a renewed certificate is
/// picked up by the next handshake; connections that are open keep theirs.
pub struct Serving(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serving(<certificate>)")
    }
}

impl Serving {
    pub fn new(certs: &Certificates) -> Result<Serving> {
        Ok(Serving(std::sync::RwLock::new(certs.certified_key()?)))
    }

    pub fn set(&self, certs: &Certificates) -> Result<()> {
        let key = certs.certified_key()?;
        if let Ok(mut current) = self.0.write() {
            *current = key;
        }
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for Serving {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// A server configuration serving `serving`'s certificate, and — with `client_ca` — completing
/// a handshake only with a client certificate signed by one of the CAs in that file.
pub fn server_config(
    serving: Arc<Serving>,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>> {
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(config_err)?;
    let builder = match client_ca {
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    client_ca: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    use rustls::pki_types::pem::PemObject;
    let bad = |what: String| Error::Pem {
        path: client_ca.to_path_buf(),
        what,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&read(client_ca)?) {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate issued again from the stored CA chains to the same CA: clients that trust
    /// the CA (the webhook configuration's caBundle) never notice a renewal.
    #[test]
    fn a_stored_authority_issues_certificates_its_clients_trust() {
        let ca = Authority::generate().expect("ca");
        let again = Authority::from_pem(&ca.cert_pem, ca.key_pem()).expect("stored");
        let names = vec!["roster.roster-system.svc".to_string()];
        for authority in [&ca, &again] {
            let leaf = authority
                .issue(&names, std::time::Duration::from_secs(3600))
                .expect("leaf");
            leaf.verify("roster.roster-system.svc").expect("chains");
            assert!(leaf.verify("other.example").is_err(), "names only its own");
        }
        // A CA whose certificate is not the one the key belongs to signs nothing clients trust.
        let other = Authority::generate().expect("other");
        let mixed = Authority::from_pem(&other.cert_pem, ca.key_pem()).expect("parses");
        let leaf = mixed
            .issue(&names, std::time::Duration::from_secs(3600))
            .expect("leaf");
        assert!(leaf.verify("roster.roster-system.svc").is_err());
    }
}
