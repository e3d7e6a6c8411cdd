//! README's claim "a member who is disabled, expired, deleted, locked, or whose MFA was reset is
//! refused on the very next request", one case at a time with real tokens and real kubectl, and
//! each with its twin: a member nothing happened to keeps access throughout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Cluster, apiserver_client, authn_request, cluster, shared, wait_for};
use crate::trust::{apply, kubeconfig, kubectl, login, member_token};

/// One request a Developer of project `p` may make; the answer tells access from refusal.
fn list_configmaps(c: &Cluster, kc: &Path, project_ns: &str) -> std::process::Output {
    kubectl(
        c,
        kc,
        &["get", "configmaps", "-n", project_ns, "-o", "name"],
    )
}

fn assert_allowed(c: &Cluster, kc: &Path, project_ns: &str, who: &str) {
    let out = list_configmaps(c, kc, project_ns);
    assert!(
        out.status.success(),
        "{who} should reach {project_ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The very next request is refused, and for one of `reasons` (roster names the requester's own
/// state). Which layer refuses depends on the API server's built-in 10 s cache of successful
/// token authentications: with a fresh authentication roster's token webhook says no (401);
/// with a cached one roster's authorization webhook does (403, with the reason) although RBAC
/// would allow. Either way it is refused; the token webhook is then asked directly, so the
/// reason is checked whatever the cache held.
async fn assert_refused(c: &Cluster, m: &Member, project_ns: &str, who: &str, reasons: &[&str]) {
    let out = list_configmaps(c, &m.kubeconfig, project_ns);
    let err = String::from_utf8_lossy(&out.stderr);
    let named = |text: &str| {
        reasons
            .iter()
            .any(|r| text.contains(&format!("roster: {r}")))
    };
    assert!(
        !out.status.success(),
        "{who}: the very next request was allowed"
    );
    assert!(
        err.contains("Unauthorized") || (err.contains("Forbidden") && named(&err)),
        "{who}: refused, but not by roster for {reasons:?}: {err}"
    );
    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": m.token}
    });
    let (cert, key) = apiserver_client(c);
    let client = Some((cert.as_path(), key.as_path()));
    let (status, body) = authn_request(c, "/authenticate", &review.to_string(), client).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a TokenReview");
    assert_eq!(v["status"]["authenticated"], false, "{who}: {body}");
    assert!(
        named(v["status"]["error"].as_str().unwrap_or_default()),
        "{who}: the token webhook refuses for another reason than {reasons:?}: {body}"
    );
}

struct Member {
    token: String,
    kubeconfig: PathBuf,
}

fn rfc3339_in(seconds: i64) -> String {
    let t =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(seconds);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cut_off_refuses_the_very_next_request() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("revoke");
    let project_ns = format!("{ns}-p");
    // Expiry happens by the clock alone, with no write anybody could notice: 30 s from now
    // leaves time to log in first.
    let expires = rfc3339_in(30);
    let member = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{email: {name}@acme.example, role: Member, projects: [{{name: p, role: Developer}}]{extra}}}\n"
        )
    };
    let mut yaml = format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {ns}, namespace: {ns}}}\nspec: {{owner: olga@acme.example, security: {{lockout: {{maxFailedAttempts: 3, lockDuration: 1h}}}}}}\n---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: p, namespace: {ns}}}\n"
    );
    for name in ["keep", "dis", "del", "lock", "reset", "lapse"] {
        yaml.push_str(&member(name, ""));
    }
    yaml.push_str(&member("exp", &format!(", expiresAt: \"{expires}\"")));
    apply(c, &yaml);

    let mut kcs = std::collections::HashMap::new();
    for name in ["keep", "dis", "del", "lock", "reset", "lapse", "exp"] {
        let token = member_token(c, &ns, name, &format!("{name}@acme.example")).await;
        let kc = kubeconfig(c, &token);
        let m = Member {
            token,
            kubeconfig: kc.clone(),
        };
        // Bindings follow acceptance; wait until RBAC lets the member in.
        wait_for(
            &format!("{name} to reach {project_ns}"),
            Duration::from_secs(30),
            || {
                list_configmaps(c, &kc, &project_ns)
                    .status
                    .success()
                    .then_some(())
            },
        );
        kcs.insert(name, m);
    }
    let keep = &kcs["keep"].kubeconfig;

    // Disabled: the admission webhook notes it before the change is stored.
    let patch = r#"{"spec":{"disabled":true}}"#;
    c.kubectl_ok(&[
        "patch",
        "membership",
        "dis",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        patch,
    ]);
    assert_refused(c, &kcs["dis"], &project_ns, "dis", &["Revoked", "Disabled"]).await;

    // Expired by an edit: expiresAt moved into the past.
    let patch = format!(r#"{{"spec":{{"expiresAt":"{}"}}}}"#, rfc3339_in(-60));
    c.kubectl_ok(&[
        "patch",
        "membership",
        "lapse",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert_refused(
        c,
        &kcs["lapse"],
        &project_ns,
        "lapse",
        &["Revoked", "Expired"],
    )
    .await;

    // Deleted (the finalizer keeps the object a moment; the member is out already).
    c.kubectl_ok(&["delete", "membership", "del", "-n", &ns, "--wait=false"]);
    let gone = ["Revoked", "Deleted", "MemberGone"];
    assert_refused(c, &kcs["del"], &project_ns, "del", &gone).await;

    // Locked by failed logins (the identity server's own writes, seen at once).
    for i in 1..=3 {
        let (status, body) = login(c, &ns, "lock@acme.example", "wrong password").await;
        assert_eq!(status, 401, "attempt {i}: {body}");
    }
    assert_refused(c, &kcs["lock"], &project_ns, "lock", &["Locked"]).await;

    // MFA reset: the controller bumps the credential generation; once it has (its Event is
    // written after the write), tokens issued before are dead.
    let out = c.roster(&["reset-mfa", "reset", "-n", &ns], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("reset's MfaReset Event", Duration::from_secs(30), || {
        let reasons = c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=reset",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        reasons.contains("MfaReset").then_some(())
    });
    assert_refused(c, &kcs["reset"], &project_ns, "reset", &["TokenRevoked"]).await;

    // Expired by the clock: no write at all, the next request after the instant is refused.
    assert_allowed(
        c,
        &kcs["exp"].kubeconfig,
        &project_ns,
        "exp before its expiry",
    );
    let wait = k8s_openapi::jiff::Timestamp::now()
        .duration_until(expires.parse().expect("expiry"))
        .as_secs_f64()
        .max(0.0);
    std::thread::sleep(Duration::from_secs_f64(wait + 1.0));
    assert_refused(c, &kcs["exp"], &project_ns, "exp", &["Expired"]).await;

    // The twin: the member nothing happened to was never refused, and still is not.
    assert_allowed(c, keep, &project_ns, "keep");
    // And the refusals last: they were not a blip of the caches.
    std::thread::sleep(Duration::from_secs(3));
    for (name, reasons) in [
        ("dis", &["Revoked", "Disabled"][..]),
        ("lapse", &["Revoked", "Expired"]),
        ("lock", &["Locked"]),
        ("reset", &["TokenRevoked"]),
        ("exp", &["Expired"]),
    ] {
        assert_refused(c, &kcs[name], &project_ns, name, reasons).await;
    }
    assert_allowed(c, keep, &project_ns, "keep");
}
