//! Commands besides `run`: `certificate` (files for the identity server and the API server's
//! token webhook), `login` (the kubectl exec credential plugin) and `security-log`.
//! Installed as `kubectl-roster` on the PATH, the binary is also the kubectl plugin:
//! `kubectl roster login ...`.

use std::path::{Path, PathBuf};

use kube::client::Body;
use ring::digest::{SHA256, digest};
use serde_json::json;

use crate::identity::audit;
use crate::webhook::Certificates;

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) for `names` into `dir`.
pub fn certificate(names: &[String], dir: &Path) -> Result<(), String> {
    let certs = Certificates::generate(names)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert, key) = certs.leaf_pem();
    let write = |name: &str, content: &str, private: bool| -> Result<(), String> {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
        }
        Ok(())
    };
    write("ca.crt", &certs.ca_pem, false)?;
    write("tls.crt", &cert, false)?;
    write("tls.key", &key, true)
}

pub async fn security_log(org: &str, namespace: &str, as_json: bool) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
    let entries = audit::read(client, namespace, org)
        .await
        .map_err(|e| format!("cannot read the security log of {org}: {e}"))?;
    if as_json {
        for e in &entries {
            println!("{}", serde_json::to_string(e).unwrap_or_default());
        }
        return Ok(());
    }
    println!(
        "{:<21} {:<26} {:<28} {:<18} {:<15} DETAIL",
        "TIME", "EVENT", "EMAIL", "REASON", "SOURCE"
    );
    for e in &entries {
        println!(
            "{:<21} {:<26} {:<28} {:<18} {:<15} {}",
            e.time,
            e.event,
            e.email.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.source_ip.as_deref().unwrap_or("-"),
            e.detail.as_deref().unwrap_or(""),
        );
    }
    if entries.is_empty() {
        eprintln!("no entries for organization {org} (in namespace {namespace})");
    }
    Ok(())
}

/// What `roster login` needs.
pub struct Login {
    /// The identity server, e.g. https://id.acme.example.
    pub server: String,
    pub organization: String,
    pub email: String,
    /// PEM CA of the identity server (else the system's roots).
    pub ca_file: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    token: String,
    #[serde(rename = "expiresAt")]
    expires_at: String,
}

fn exec_credential(c: &Cached) -> String {
    json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": c.token, "expirationTimestamp": c.expires_at},
    })
    .to_string()
}

fn cache_path(l: &Login) -> Option<PathBuf> {
    let dir = l.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("roster").join("tokens"))
    })?;
    let key = digest(
        &SHA256,
        format!("{}\n{}\n{}", l.server, l.organization, l.email).as_bytes(),
    );
    let hex: String = key.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(dir.join(format!("{hex}.json")))
}

fn secret_input(env: &str, prompt: &str) -> Result<String, String> {
    if let Ok(v) = std::env::var(env) {
        return Ok(v);
    }
    rpassword::prompt_password(prompt).map_err(|e| {
        format!(
            "cannot read from the terminal ({e}); set {env} or run where a terminal is available"
        )
    })
}

/// The exec credential plugin: prints an ExecCredential with a cached token while it is
/// valid, else logs in (password and code from ROSTER_PASSWORD / ROSTER_CODE or the terminal).
pub async fn login(l: &Login) -> Result<(), String> {
    let cache = cache_path(l);
    if let Some(p) = &cache
        && let Ok(text) = std::fs::read_to_string(p)
        && let Ok(c) = serde_json::from_str::<Cached>(&text)
        && c.expires_at
            .parse::<k8s_openapi::jiff::Timestamp>()
            .is_ok_and(|t| {
                t > k8s_openapi::jiff::Timestamp::now() + std::time::Duration::from_secs(30)
            })
    {
        println!("{}", exec_credential(&c));
        return Ok(());
    }
    let password = secret_input("ROSTER_PASSWORD", &format!("Password for {}: ", l.email))?;
    let code = match std::env::var("ROSTER_CODE") {
        Ok(c) => c,
        Err(_) => secret_input("ROSTER_CODE", "Authentication code (empty if none): ")?,
    };
    let url: http::Uri = l
        .server
        .parse()
        .map_err(|e| format!("--server {:?}: {e}", l.server))?;
    let mut config = kube::Config::new(url);
    if let Some(ca) = &l.ca_file {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        let ders: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .map(|c| c.to_vec())
            .collect();
        if ders.is_empty() {
            return Err(format!("{}: no PEM certificate in it", ca.display()));
        }
        config.root_cert = Some(ders);
    }
    let client =
        kube::Client::try_from(config).map_err(|e| format!("cannot build an HTTPS client: {e}"))?;
    let body = json!({
        "organization": l.organization,
        "email": l.email,
        "password": password,
        "code": Some(code).filter(|c| !c.is_empty()),
    });
    let req = http::Request::post("/api/v1/login")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| format!("cannot reach the identity server at {}: {e}", l.server))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| format!("the identity server's answer was cut off: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "login refused ({status}): {}",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given")
        ));
    }
    let c = Cached {
        token: v
            .get("token")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
        expires_at: v
            .get("expiresAt")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
    };
    if c.token.is_empty() {
        return Err("the identity server answered without a token".into());
    }
    if let Some(p) = &cache {
        // Created 0600 from the start: the token is a credential.
        let saved = p
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(p)?;
                f.write_all(serde_json::to_string(&c).unwrap_or_default().as_bytes())
            });
        if let Err(e) = saved {
            eprintln!("roster: the token is not cached ({}: {e})", p.display());
        }
    }
    println!("{}", exec_credential(&c));
    Ok(())
}
