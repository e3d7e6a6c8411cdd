//! The foundation: the control plane is real, the CRDs install, the examples are accepted and
//! schema rules are enforced by the API server with their messages.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

use crate::harness::{cluster, examples_as_of_now, root, shared};

// The guard orders this test against the API server restart test; each test has a runtime of
// its own, so holding it across an await blocks nothing else.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn control_plane_is_the_pinned_kubernetes_release() {
    let _api = shared();
    let client = cluster().client().await;
    let version = client.apiserver_version().await.expect("/version");
    let go_mod =
        std::fs::read_to_string(root().join("tests/control-plane/go.mod")).expect("go.mod");
    let pinned = go_mod
        .lines()
        .find_map(|l| l.strip_prefix("require k8s.io/kubernetes "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("k8s.io/kubernetes in go.mod");
    assert_eq!(version.git_version, pinned);
}

// The guard orders this test against the API server restart test; each test has a runtime of
// its own, so holding it across an await blocks nothing else.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn crds_are_established_as_generated() {
    let _api = shared();
    let crds: Api<CustomResourceDefinition> = Api::all(cluster().client().await);
    for expected in roster::crdgen::definitions() {
        let name = expected.metadata.name.clone().expect("crd name");
        let live = crds.get(&name).await.expect("crd installed");
        let established = live
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
        assert_eq!(live.spec.names.kind, expected.spec.names.kind);
        assert_eq!(
            serde_json::to_value(&live.spec.versions[0].schema).expect("json"),
            serde_json::to_value(&expected.spec.versions[0].schema).expect("json"),
            "{name}: the served schema differs from the generated one"
        );
    }
}

#[test]
fn examples_are_accepted() {
    let _api = shared();
    let c = cluster();
    let acme = examples_as_of_now("acme");
    let out = c.kubectl_ok(&["apply", "-f", acme.to_str().expect("utf-8 path")]);
    assert!(out.contains("organization.roster.dev/acme"), "{out}");
    // Declared ones only: roster may have made a bootstrap Membership for the owner meanwhile.
    let names = c.kubectl_ok(&[
        "get",
        "memberships",
        "-n",
        "acme",
        "-l",
        "!roster.dev/bootstrap",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 13, "{names}");
    let projects = c.kubectl_ok(&["get", "projects", "-n", "acme", "-o", "name"]);
    assert_eq!(projects.lines().count(), 4, "{projects}");
}

/// Every file in examples/invalid names, in its `# expect:` line, the error the API server must
/// give; the object must not be stored.
#[test]
fn invalid_examples_are_rejected_with_their_message() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("invalid");
    let dir = root().join("examples/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/invalid")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected a folder of invalid examples");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let out = c.kubectl(&["apply", "-n", &ns, "-f", file.to_str().expect("utf-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", file.display());
        assert!(
            stderr.contains(expect),
            "{}:\n  want: {expect}\n  got:  {stderr}",
            file.display()
        );
    }
    let stored = c.kubectl_ok(&[
        "get",
        "organizations,projects,memberships",
        "-n",
        &ns,
        "-o",
        "name",
    ]);
    assert_eq!(stored.trim(), "", "rejected objects were stored");
}

#[test]
fn immutable_fields_cannot_change() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("immutable");
    let member = |email: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: bob, namespace: {ns}}}\nspec: {{email: {email}}}\n"
        )
    };
    let project = |namespace: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: p, namespace: {ns}}}\nspec: {{{namespace}}}\n"
        )
    };
    let apply = |yaml: String| c.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));

    assert!(apply(member("bob@acme.example")).status.success());
    let out = apply(member("robert@acme.example"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.email is immutable"));

    assert!(apply(project("namespace: p-one")).status.success());
    for change in ["namespace: p-two", ""] {
        let out = apply(project(change));
        assert!(
            !out.status.success(),
            "changing spec.namespace to {change:?} was accepted"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("spec.namespace is immutable"));
    }
}
