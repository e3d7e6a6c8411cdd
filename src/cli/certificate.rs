//! `roster certificate`: the identity server's certificate and the API server's side of
//! roster's webhooks, written before either runs.

use std::path::Path;

use super::{Result, write_file};
use crate::tls::{Authority, Certificates};

/// How long the certificate `roster certificate` writes is valid (roster does not renew
/// files; a shared serving Secret made from `--keep-ca-key` is renewed by roster itself).
const FILE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(397 * 24 * 3600);

/// What `roster certificate` writes besides the certificate itself.
#[derive(Default)]
pub struct Options<'a> {
    /// Where the API server reaches roster's `--authn-addr`: its side of the token webhooks.
    pub authn_url: Option<&'a str>,
    /// The name to verify roster's certificate against when `authn_url` is an address (a
    /// Service's ClusterIP): `tls-server-name` in the API server's kubeconfigs.
    pub authn_server_name: Option<&'a str>,
    /// The HOST:PORT the API server dials for the admission webhook.
    pub webhook_host: Option<&'a str>,
    /// Also write the CA's key (ca.key), for the chart's shared serving Secret.
    pub keep_ca_key: bool,
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
pub fn certificate(names: &[String], dir: &Path, options: &Options) -> Result<()> {
    let authority = Authority::generate()?;
    let certs = authority.issue(names, FILE_LIFETIME)?;
    std::fs::create_dir_all(dir).map_err(|source| super::Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let (cert, key) = certs.leaf_pem();
    let write =
        |name: &str, content: &str, private: bool| write_file(&dir.join(name), content, private);
    write("ca.crt", &certs.ca_pem, false)?;
    write("tls.crt", &cert, false)?;
    write("tls.key", &key, true)?;
    if options.keep_ca_key {
        write("ca.key", authority.key_pem(), true)?;
    }
    let Some(url) = options.authn_url else {
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
            .map_err(|source| super::Error::Write {
                path: dir.join(name),
                source,
            })
    };
    let (ca, crt, key) = (
        abs("ca.crt")?,
        abs("apiserver-client.crt")?,
        abs("apiserver-client.key")?,
    );
    let server_name = options
        .authn_server_name
        .map(|n| format!("\n    tls-server-name: {n}"))
        .unwrap_or_default();
    for hook in ["authenticate", "authorize"] {
        write(
            &format!("{hook}-webhook.kubeconfig"),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: roster\n  cluster:\n    server: {url}/{hook}\n    certificate-authority: {ca}{server_name}\nusers:\n- name: apiserver\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: roster\n  context: {{cluster: roster, user: apiserver}}\ncurrent-context: roster\n"
            ),
            false,
        )?;
    }
    if let Some(host) = options.webhook_host {
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
