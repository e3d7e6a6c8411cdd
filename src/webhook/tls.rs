//! The webhook's own serving certificate for local use: a CA and a leaf for the addresses the
//! API server dials, made with rcgen at start-up. (The chart issue adds other sources, such as
//! cert-manager; the CA is what goes into the webhook configuration's caBundle.)

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

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
    pub fn generate(names: &[String]) -> Result<Certificates, String> {
        Certificates::issue("roster webhook", names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A fresh CA and a client certificate named `common_name` (for the API server's calls to
    /// roster's token and authorization webhooks). The CA's key is dropped: the CA can vouch for
    /// this one certificate and never for another.
    pub fn generate_client(common_name: &str) -> Result<Certificates, String> {
        Certificates::issue(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        common_name: &str,
        names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Certificates, String> {
        let err = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(err)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, format!("{common_name} CA"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf_key = KeyPair::generate().map_err(err)?;
        let mut leaf = CertificateParams::new(names.to_vec()).map_err(err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, common_name);
        leaf.extended_key_usages = vec![usage];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;
        Ok(Certificates {
            ca_pem: ca_cert.pem(),
            cert_der: leaf_cert.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        })
    }

    /// A certificate made elsewhere (a file the operator or a test harness wrote): the leaf
    /// certificate and key in PEM, and the CA that signed it.
    pub fn from_pem_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: Option<&std::path::Path>,
    ) -> Result<Certificates, String> {
        use rustls::pki_types::pem::PemObject;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let cert_der = rustls::pki_types::CertificateDer::from_pem_slice(&read(cert)?)
            .map_err(|e| format!("{}: not a PEM certificate: {e}", cert.display()))?;
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(key)?)
            .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
        let ca_pem = match ca {
            Some(p) => String::from_utf8(read(p)?).map_err(|e| e.to_string())?,
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

    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        self.config(None)
    }

    /// A server that completes a handshake only with a client certificate signed by one of the
    /// CAs in `client_ca_pem` (the API server's, for the token and authorization webhooks):
    /// anyone else gets a TLS failure and not a byte of HTTP.
    pub fn server_config_requiring_clients(
        &self,
        client_ca_pem: &[u8],
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(client_ca_pem) {
            let cert = cert.map_err(|e| format!("client CA: not a PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("client CA: unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("client CA: no certificate in it".into());
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("client CA: {e}"))?;
        self.config(Some(verifier))
    }

    fn config(
        &self,
        clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key_der.clone())
            .map_err(|e| e.to_string())?;
        let cert = rustls::pki_types::CertificateDer::from(self.cert_der.clone());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
        let builder = match clients {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(vec![cert], key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
