//! Talking to roster's identity server from a terminal: `login` (the kubectl exec credential
//! plugin, with a token cache) and `transfer-ownership`.

use std::path::{Path, PathBuf};

use kube::client::Body;
use ring::digest::{SHA256, digest};
use serde_json::json;

use super::{Error, Result, write_file};

/// The identity server's CA: PEM from a file (`--ca-file`), or base64 PEM inline (`--ca-data`,
/// as a downloaded kubeconfig carries it), else none (the system's roots).
pub fn ca_pem(ca_file: Option<&Path>, ca_data: Option<&str>) -> Result<Option<(String, Vec<u8>)>> {
    use base64::Engine;
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Invalid(format!("--ca-file: cannot read {}: {e}", ca.display())))?;
        return Ok(Some((format!("--ca-file {}", ca.display()), pem)));
    }
    if let Some(data) = ca_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| Error::Invalid(format!("--ca-data: not base64 ({e})")))?;
        return Ok(Some(("--ca-data".into(), pem)));
    }
    Ok(None)
}

/// An HTTPS client for the identity server (its CA as given, else the system's roots),
/// built on kube's client stack: no second HTTP stack in the binary.
fn identity_client(server: &str, ca: Option<&(String, Vec<u8>)>) -> Result<kube::Client> {
    let url: http::Uri = server
        .parse()
        .map_err(|e| Error::Invalid(format!("--server {server:?}: {e}")))?;
    let mut config = kube::Config::new(url);
    if let Some((what, pem)) = ca {
        use rustls::pki_types::pem::PemObject;
        let ders: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .filter_map(std::result::Result::ok)
            .map(|c| c.to_vec())
            .collect();
        if ders.is_empty() {
            return Err(Error::Invalid(format!("{what}: no PEM certificate in it")));
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
    ca: Option<&(String, Vec<u8>)>,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    send_json(server, ca, req).await
}

/// Sends a request to the identity server; the answer's JSON, or its error text.
async fn send_json(
    server: &str,
    ca: Option<&(String, Vec<u8>)>,
    req: http::Result<http::Request<Body>>,
) -> Result<serde_json::Value> {
    let client = identity_client(server, ca)?;
    let unreachable = |detail: String| Error::Identity {
        server: server.into(),
        detail,
    };
    let req = req.map_err(|e| unreachable(e.to_string()))?;
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
    let ca = ca_pem(ca_file, None)?;
    post_json(server, ca.as_ref(), "/api/v1/ownership-transfer", &body).await?;
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
    /// The same, base64-encoded, inline.
    pub ca_data: Option<String>,
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
    let c = session(l).await?;
    println!("{}", exec_credential(&c));
    Ok(())
}

/// A session token for `l`: the cached one while it is valid for 30 s more, else a new login.
async fn session(l: &Login) -> Result<Cached> {
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
        return Ok(c);
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
    let ca = ca_pem(l.ca_file.as_deref(), l.ca_data.as_deref())?;
    let v = post_json(&l.server, ca.as_ref(), "/api/v1/login", &body).await?;
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
    Ok(c)
}

/// The `roster login` settings of a kubeconfig context (the current one by default): its user's
/// exec entry, from its environment and arguments.
pub fn login_of_context(context: Option<&str>) -> Result<Login> {
    let kc = kube::config::Kubeconfig::read()
        .map_err(|e| Error::Invalid(format!("cannot read the kubeconfig: {e}")))?;
    let name = context
        .map(str::to_string)
        .or(kc.current_context.clone())
        .ok_or_else(|| {
            Error::Invalid("the kubeconfig has no current context; pass --context".into())
        })?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| Error::Invalid(format!("no context {name} in the kubeconfig")))?;
    let exec = kc
        .auth_infos
        .iter()
        .find(|a| a.name == ctx.user.clone().unwrap_or_default())
        .and_then(|a| a.auth_info.as_ref())
        .and_then(|a| a.exec.as_ref())
        .filter(|e| {
            e.args.as_ref().and_then(|a| a.first()).is_some_and(|a| a == "login")
                && e.command.as_deref().is_some_and(|c| c.ends_with("roster"))
        })
        .ok_or_else(|| {
            Error::Invalid(format!(
                "context {name} does not log in with `kubectl roster login`: whoami is for roster's members (download a kubeconfig from your account page)"
            ))
        })?;
    let mut settings: std::collections::BTreeMap<String, String> = exec
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.get("name")?.clone(), e.get("value")?.clone())))
        .collect();
    let args: Vec<&String> = exec.args.iter().flatten().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].trim_start_matches("--");
        let (key, value) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.to_string(), args.get(i + 1).map(|v| v.to_string())),
        };
        if !args[i].contains('=') {
            i += 1;
        }
        i += 1;
        let env = match key.as_str() {
            "server" => "ROSTER_SERVER",
            "organization" => "ROSTER_ORGANIZATION",
            "email" => "ROSTER_EMAIL",
            "ca-file" => "ca-file",
            "ca-data" => "ROSTER_CA_DATA",
            "cache-dir" => "cache-dir",
            _ => continue,
        };
        if let Some(v) = value {
            settings.insert(env.to_string(), v);
        }
    }
    let need = |k: &str| {
        settings
            .get(k)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("context {name}: its roster login names no {k}")))
    };
    Ok(Login {
        server: need("ROSTER_SERVER")?,
        organization: need("ROSTER_ORGANIZATION")?,
        email: need("ROSTER_EMAIL")?,
        ca_file: settings.get("ca-file").map(PathBuf::from),
        ca_data: settings.get("ROSTER_CA_DATA").cloned(),
        cache_dir: settings.get("cache-dir").map(PathBuf::from),
    })
}

/// `whoami`: the logged-in member as roster sees them now (the identity server answers for the
/// session token; a Member may not read Memberships through the API server).
pub async fn whoami(context: Option<&str>, json_out: bool) -> Result<()> {
    let l = login_of_context(context)?;
    let c = session(&l).await?;
    let ca = ca_pem(l.ca_file.as_deref(), l.ca_data.as_deref())?;
    let req = http::Request::get("/api/v1/whoami")
        .header(http::header::AUTHORIZATION, format!("Bearer {}", c.token))
        .body(Body::empty());
    let v = send_json(&l.server, ca.as_ref(), req).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    print!("{}", whoami_text(&v));
    Ok(())
}

fn whoami_text(v: &serde_json::Value) -> String {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_str())
            .unwrap_or("-")
            .to_string()
    };
    let mut out = format!(
        "{} in organization {} (Membership {})\nrole:      {}\nstatus:    {}\nMFA:       {}{}\ntoken:     valid until {}\n",
        s("/email"),
        s("/organization"),
        s("/membership"),
        s("/role"),
        s("/phase"),
        s("/mfa/state"),
        v.pointer("/mfa/deadline")
            .and_then(|x| x.as_str())
            .map(|d| format!(" (enrol before {d})"))
            .unwrap_or_default(),
        s("/tokenExpiresAt"),
    );
    out.push_str("projects:\n");
    for e in v["access"].as_array().into_iter().flatten() {
        let get = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("-");
        match e.get("reason").and_then(|r| r.as_str()) {
            None => out.push_str(&format!(
                "  {:<16} {:<24} {}\n",
                get("project"),
                get("namespace"),
                get("role")
            )),
            Some(why) => out.push_str(&format!(
                "  {:<16} {:<24} no access: {why}\n",
                get("project"),
                get("namespace")
            )),
        }
    }
    out
}
