//! Commands besides `run`: `certificate` (files for the identity server and the API server's
//! token webhook), `login` (the kubectl exec credential plugin), `security-log`, and the
//! admin requests `invite link|resend`, `unlock`, `reset-mfa`, `transfer-ownership`.
//! Installed as `kubectl-roster` on the PATH, the binary is also the kubectl plugin:
//! `kubectl roster login ...`.

use std::path::{Path, PathBuf};

use kube::client::Body;
use ring::digest::{SHA256, digest};
use serde_json::json;

use crate::identity::audit;
use crate::webhook::Certificates;

/// Writes a file; a private one is created with mode 0600 (never readable by others, not even
/// for an instant) and tightened to 0600 if it existed.
pub fn write_file(path: &Path, content: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if private {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    }
    f.write_all(content.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes the identity server's certificate — `ca.crt`, `tls.crt`, `tls.key` — for `names`
/// into `dir`; with `authn_url` (where the API server reaches roster's `--authn-addr`), also
/// the API server's side: a client certificate only it holds (`apiserver-client.crt`/`.key`,
/// and `client-ca.crt` for roster's `--authn-client-ca`), `authenticate-webhook.kubeconfig`
/// (for `--authentication-token-webhook-config-file`), `authorize-webhook.kubeconfig` and
/// `authorization.yaml` (for `--authorization-config`: roster first, for roster's members only
/// and uncached, then RBAC). With `webhook_host` (the HOST:PORT the API server dials for the
/// admission webhook), also `admission.yaml` for `--admission-control-config-file`, so that the
/// API server presents the same client certificate to roster's admission webhook (run with
/// `--webhook-client-ca`). Keys are created with mode 0600.
pub fn certificate(
    names: &[String],
    dir: &Path,
    authn_url: Option<&str>,
    webhook_host: Option<&str>,
) -> Result<(), String> {
    let certs = Certificates::generate(names)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert, key) = certs.leaf_pem();
    let write =
        |name: &str, content: &str, private: bool| write_file(&dir.join(name), content, private);
    write("ca.crt", &certs.ca_pem, false)?;
    write("tls.crt", &cert, false)?;
    write("tls.key", &key, true)?;
    let Some(url) = authn_url else {
        return Ok(());
    };
    // The API server's client identity for roster's token and authorization webhooks. Its CA
    // signs this one certificate and is then forgotten: nothing else can ever pass.
    let client = Certificates::generate_client("kube-apiserver")?;
    let (client_cert, client_key) = client.leaf_pem();
    write("client-ca.crt", &client.ca_pem, false)?;
    write("apiserver-client.crt", &client_cert, false)?;
    write("apiserver-client.key", &client_key, true)?;
    let url = url.trim_end_matches('/');
    let abs = |name: &str| {
        std::path::absolute(dir.join(name))
            .map(|p| p.display().to_string())
            .map_err(|e| format!("cannot make {name} absolute: {e}"))
    };
    let (ca, crt, key) = (
        abs("ca.crt")?,
        abs("apiserver-client.crt")?,
        abs("apiserver-client.key")?,
    );
    for hook in ["authenticate", "authorize"] {
        write(
            &format!("{hook}-webhook.kubeconfig"),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: roster\n  cluster:\n    server: {url}/{hook}\n    certificate-authority: {ca}\nusers:\n- name: apiserver\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: roster\n  context: {{cluster: roster, user: apiserver}}\ncurrent-context: roster\n"
            ),
            false,
        )?;
    }
    if let Some(host) = webhook_host {
        // The API server picks the user whose name is the webhook's host:port.
        write(
            "admission-webhook.kubeconfig",
            &format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: '{host}'\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n"
            ),
            false,
        )?;
        let kubeconfig = abs("admission-webhook.kubeconfig")?;
        write(
            "admission.yaml",
            &format!(
                "# kube-apiserver --admission-control-config-file: present the API server's client\n# certificate to roster's admission webhook ({host}).\napiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: ValidatingAdmissionWebhook\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {kubeconfig}\n"
            ),
            false,
        )?;
    }
    let authorize = abs("authorize-webhook.kubeconfig")?;
    write(
        "authorization.yaml",
        &format!(
            r#"# kube-apiserver --authorization-config: roster is asked first, only about requests of its
# members (tokens it issued carry the group roster:<org>), never cached, so that a disabled
# member's next request is refused; it has no opinion otherwise, and RBAC decides.
apiVersion: apiserver.config.k8s.io/v1
kind: AuthorizationConfiguration
authorizers:
- type: Webhook
  name: roster
  webhook:
    timeout: 3s
    subjectAccessReviewVersion: v1
    matchConditionSubjectAccessReviewVersion: v1
    failurePolicy: Deny
    authorizedTTL: 1s
    unauthorizedTTL: 1s
    cacheAuthorizedRequests: false
    cacheUnauthorizedRequests: false
    connectionInfo:
      type: KubeConfigFile
      kubeConfigFile: {authorize}
    matchConditions:
    - expression: "request.groups.exists(g, g.startsWith('roster:'))"
- type: RBAC
  name: rbac
"#
        ),
        false,
    )
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

/// An HTTPS client for the identity server (its CA from a file, else the system's roots),
/// built on kube's client stack: no second HTTP stack in the binary.
fn identity_client(server: &str, ca_file: Option<&Path>) -> Result<kube::Client, String> {
    let url: http::Uri = server
        .parse()
        .map_err(|e| format!("--server {server:?}: {e}"))?;
    let mut config = kube::Config::new(url);
    if let Some(ca) = ca_file {
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
    kube::Client::try_from(config).map_err(|e| format!("cannot build an HTTPS client: {e}"))
}

/// POSTs JSON to the identity server; the answer's JSON, or its error text.
async fn post_json(
    server: &str,
    ca_file: Option<&Path>,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let client = identity_client(server, ca_file)?;
    let req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| format!("cannot reach the identity server at {server}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| format!("the identity server's answer was cut off: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "refused ({status}): {}",
            v.get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given")
        ));
    }
    Ok(v)
}

async fn kube_client(namespace: Option<String>) -> Result<(kube::Client, String), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, ns))
}

/// `invite link`: the member's invitation link, or why there is none.
pub async fn invite_link(member: &str, namespace: Option<String>) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Secret as KubeSecret;
    let (client, ns) = kube_client(namespace).await?;
    let secrets: kube::Api<KubeSecret> = kube::Api::namespaced(client.clone(), &ns);
    let name = crate::api::contract::invitation_link_name(member);
    let readable = secrets.get_opt(&name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "you may not read {member}'s invitation link: a link sets the member's password, so only the owner and platform admins read any, and an Admin only those of Members whose projects they all administer"
        ),
        e => format!("cannot read Secret {ns}/{name}: {e}"),
    })?;
    if let Some(link) = readable.and_then(|s| s.data?.remove("link")) {
        println!("{}", String::from_utf8_lossy(&link.0));
        return Ok(());
    }
    let memberships: kube::Api<crate::api::Membership> = kube::Api::namespaced(client, &ns);
    let m = memberships
        .get_opt(member)
        .await
        .map_err(|e| format!("cannot read Membership {ns}/{member}: {e}"))?
        .ok_or_else(|| format!("there is no Membership {member} in namespace {ns}"))?;
    let inv = m.status.and_then(|s| s.invitation);
    Err(match inv {
        Some(i) if i.state == Some(crate::api::InvitationState::Accepted) => {
            format!("{member} has accepted their invitation; there is no link any more")
        }
        Some(i) if i.delivery.as_deref() == Some("Email") => {
            format!(
                "{member}'s invitation went by e-mail; `roster invite resend {member}` sends a new one"
            )
        }
        _ => format!(
            "no invitation link for {member} yet: is roster running with --identity-addr? (kubectl describe membership {member} -n {ns})"
        ),
    })
}

/// `unlock`, `reset-mfa`, `invite resend`: a request annotation with a new nonce, which roster
/// acts on once (DESIGN.md §2). The admission webhook decides who may ask.
pub async fn request(
    request: crate::api::contract::Request,
    member: &str,
    namespace: Option<String>,
) -> Result<(), String> {
    let kind = request.kind();
    let (client, ns) = kube_client(namespace).await?;
    let api: kube::Api<crate::api::Membership> = kube::Api::namespaced(client, &ns);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_default();
    let patch = json!({"metadata": {"annotations": {request.annotation(): nonce}}});
    api.patch(
        member,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(s) => format!("{kind} of {member} refused: {}", s.message),
        e => format!("cannot reach the API server: {e}"),
    })?;
    println!(
        "requested {kind} for {member} in {ns}; roster acts on it once (kubectl describe membership {member} -n {ns})"
    );
    Ok(())
}

/// `transfer-ownership`: the owner re-authenticates; roster moves `spec.owner`.
pub async fn transfer_ownership(
    server: &str,
    ca_file: Option<&Path>,
    organization: &str,
    email: &str,
    to: &str,
) -> Result<(), String> {
    let password = secret_input("ROSTER_PASSWORD", &format!("Password for {email}: "))?;
    let code = match std::env::var("ROSTER_CODE") {
        Ok(c) => c,
        Err(_) => secret_input("ROSTER_CODE", "Authentication code (empty if none): ")?,
    };
    let body = json!({
        "organization": organization, "email": email, "password": password,
        "code": Some(code).filter(|c| !c.is_empty()), "newOwner": to,
    });
    post_json(server, ca_file, "/api/v1/ownership-transfer", &body)
        .await
        .map_err(|e| format!("ownership transfer {e}"))?;
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
    let body = json!({
        "organization": l.organization,
        "email": l.email,
        "password": password,
        "code": Some(code).filter(|c| !c.is_empty()),
    });
    let v = post_json(&l.server, l.ca_file.as_deref(), "/api/v1/login", &body)
        .await
        .map_err(|e| format!("login {e}"))?;
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
        // 0600 from the start, and on every write (a file left wider by anything else is
        // tightened): the token is a credential.
        let saved = p
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .map_err(|e| e.to_string())
            .and_then(|_| write_file(p, &serde_json::to_string(&c).unwrap_or_default(), true));
        if let Err(e) = saved {
            eprintln!("roster: the token is not cached ({}: {e})", p.display());
        }
    }
    println!("{}", exec_credential(&c));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_from_the_start_and_on_every_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("roster-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token.json");
        // A file someone left readable by everyone is tightened on the next write.
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_file(&path, "secret", true).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret");
        let fresh = dir.join("tls.key");
        write_file(&fresh, "key", true).expect("write");
        let mode = std::fs::metadata(&fresh)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
