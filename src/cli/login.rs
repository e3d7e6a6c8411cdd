//! Talking to roster's identity server from a terminal: `login` (the kubectl exec credential
//! plugin, with a token cache) and `transfer-ownership`.

use std::path::{Path, PathBuf};

use kube::client::Body;
use ring::digest::{SHA256, digest};
use serde_json::json;

use super::{Error, Result, write_file};

/// An HTTPS client for the identity server (its CA from a file, else the system's roots),
/// built on kube's client stack: no second HTTP stack in the binary.
fn identity_client(server: &str, ca_file: Option<&Path>) -> Result<kube::Client> {
    let url: http::Uri = server
        .parse()
        .map_err(|e| Error::Invalid(format!("--server {server:?}: {e}")))?;
    let mut config = kube::Config::new(url);
    if let Some(ca) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Invalid(format!("--ca-file: cannot read {}: {e}", ca.display())))?;
        let ders: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .filter_map(std::result::Result::ok)
            .map(|c| c.to_vec())
            .collect();
        if ders.is_empty() {
            return Err(Error::Invalid(format!(
                "--ca-file {}: no PEM certificate in it",
                ca.display()
            )));
        }
        config.root_cert = Some(ders);
    }
    kube::Client::try_from(config).map_err(|e| Error::Identity {
        server: server.into(),
        detail: format!("cannot build an HTTPS client: {e}"),
    })
}

/// POSTs JSON to the identity server; the answer's JSON, or its error text.
async fn post_json(
    server: &str,
    ca_file: Option<&Path>,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let client = identity_client(server, ca_file)?;
    let unreachable = |detail: String| Error::Identity {
        server: server.into(),
        detail,
    };
    let req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| unreachable(format!("cannot reach it: {e}")))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| unreachable(format!("its answer was cut off: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        return Err(Error::Refused(format!(
            "refused ({status}): {}",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given")
        )));
    }
    Ok(v)
}

/// `transfer-ownership`: the owner re-authenticates; roster moves `spec.owner`.
pub async fn transfer_ownership(
    server: &str,
    ca_file: Option<&Path>,
    organization: &str,
    email: &str,
    to: &str,
) -> Result<()> {
    let password = secret_input("ROSTER_PASSWORD", &format!("Password for {email}: "))?;
    let code = match std::env::var("ROSTER_CODE") {
        Ok(c) => c,
        Err(_) => secret_input("ROSTER_CODE", "Authentication code (empty if none): ")?,
    };
    let body = json!({
        "organization": organization, "email": email, "password": password,
        "code": Some(code).filter(|c| !c.is_empty()), "newOwner": to,
    });
    post_json(server, ca_file, "/api/v1/ownership-transfer", &body).await?;
    println!(
        "{to} is now the owner of {organization}; {email} keeps the role their Membership declares"
    );
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

fn secret_input(env: &'static str, prompt: &str) -> Result<String> {
    if let Ok(v) = std::env::var(env) {
        return Ok(v);
    }
    rpassword::prompt_password(prompt).map_err(|source| Error::Terminal { env, source })
}

/// The exec credential plugin: prints an ExecCredential with a cached token while it is
/// valid, else logs in (password and code from ROSTER_PASSWORD / ROSTER_CODE or the terminal).
pub async fn login(l: &Login) -> Result<()> {
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
    let body = json!({
        "organization": l.organization,
        "email": l.email,
        "password": password,
        "code": Some(code).filter(|c| !c.is_empty()),
    });
    let v = post_json(&l.server, l.ca_file.as_deref(), "/api/v1/login", &body).await?;
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
        return Err(Error::Identity {
            server: l.server.clone(),
            detail: "it answered without a token".into(),
        });
    }
    if let Some(p) = &cache {
        // 0600 from the start, and on every write (a file left wider by anything else is
        // tightened): the token is a credential.
        let saved = p
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .map_err(|source| Error::Write {
                path: p.clone(),
                source,
            })
            .and_then(|_| write_file(p, &serde_json::to_string(&c).unwrap_or_default(), true));
        if let Err(e) = saved {
            eprintln!("roster: the token is not cached ({}: {e})", p.display());
        }
    }
    println!("{}", exec_credential(&c));
    Ok(())
}
