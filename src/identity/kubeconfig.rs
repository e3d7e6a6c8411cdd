//! The kubeconfig a member downloads from their account page: the API server's address and CA
//! (roster's settings), and `kubectl roster login` as the exec credential plugin for this member
//! and organization. It holds no credential — the plugin asks for the password (and code) and
//! caches the token — so showing it on a page costs nothing if the page is seen by others.

use base64::Engine;
use serde_json::json;

/// Where members reach the API server, from `roster run --cluster-server/--cluster-ca-file`,
/// and the identity server's CA for the plugin (`--identity-ca-file`) when it is not one the
/// members' systems trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterAccess {
    pub server: String,
    pub ca_pem: Option<String>,
    pub identity_ca_pem: Option<String>,
}

/// The file's name: `<organization>.kubeconfig`.
pub fn file_name(org: &str) -> String {
    format!("{org}.kubeconfig")
}

pub fn render(access: &ClusterAccess, identity_url: &str, org: &str, email: &str) -> String {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    let context = format!("roster-{org}");
    let user = format!("{email}@{org}");
    let mut cluster = json!({ "server": access.server });
    if let Some(ca) = &access.ca_pem {
        cluster["certificate-authority-data"] = json!(b64(ca));
    }
    let mut env = vec![
        json!({"name": "ROSTER_SERVER", "value": identity_url}),
        json!({"name": "ROSTER_ORGANIZATION", "value": org}),
        json!({"name": "ROSTER_EMAIL", "value": email}),
    ];
    if let Some(ca) = &access.identity_ca_pem {
        env.push(json!({"name": "ROSTER_CA_DATA", "value": b64(ca)}));
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": user, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            // kubectl finds roster as its plugin under this name (README: install).
            "command": "kubectl-roster",
            "args": ["login"],
            "env": env,
            "interactiveMode": "IfAvailable",
            "provideClusterInfo": false,
        }}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user, "namespace": org}}],
        "current-context": context,
    });
    serde_saphyr::to_string(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_the_cluster_and_the_member_and_holds_no_secret() {
        let access = ClusterAccess {
            server: "https://k8s.acme.example:6443".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n".into()),
            identity_ca_pem: Some(
                "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n".into(),
            ),
        };
        let text = render(
            &access,
            "https://id.acme.example",
            "acme",
            "bob@acme.example",
        );
        let v: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
        assert_eq!(v["current-context"], "roster-acme");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://k8s.acme.example:6443"
        );
        let ca = v["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .expect("ca");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .expect("base64");
        assert!(String::from_utf8_lossy(&decoded).contains("AAA"));
        let exec = &v["users"][0]["user"]["exec"];
        assert_eq!(exec["command"], "kubectl-roster");
        assert_eq!(exec["args"][0], "login");
        let env: Vec<(String, String)> = exec["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or("").into(),
                    e["value"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        assert!(env.contains(&("ROSTER_EMAIL".into(), "bob@acme.example".into())));
        assert!(env.contains(&("ROSTER_ORGANIZATION".into(), "acme".into())));
        assert!(env.contains(&("ROSTER_SERVER".into(), "https://id.acme.example".into())));
        assert!(env.iter().any(|(k, _)| k == "ROSTER_CA_DATA"));
        assert_eq!(v["contexts"][0]["context"]["namespace"], "acme");
        assert!(
            !text.contains("token") && !text.contains("password"),
            "{text}"
        );
        // Without a CA the system's roots are used: no empty field.
        let bare = render(
            &ClusterAccess {
                server: "https://k".into(),
                ca_pem: None,
                identity_ca_pem: None,
            },
            "https://id",
            "acme",
            "bob@acme.example",
        );
        assert!(
            !bare.contains("certificate-authority-data") && !bare.contains("ROSTER_CA_DATA"),
            "{bare}"
        );
    }
}
