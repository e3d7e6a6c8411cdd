//! `roster plan` and `roster diff` on trees of files: the examples, every kind of violation, a
//! change of each kind, and a large generated tree.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

const NOW: &str = "2026-11-23T12:00:00Z";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn opts(namespace: Option<&str>) -> Options {
    options(
        namespace.map(str::to_string),
        &Who {
            as_user: None,
            as_groups: vec![],
        },
        Some(NOW),
    )
    .expect("options")
}

fn as_user(user: &str) -> Options {
    options(
        None,
        &Who {
            as_user: Some(user.into()),
            as_groups: vec![],
        },
        Some(NOW),
    )
    .expect("options")
}

/// A directory of its own holding `files` (name, YAML).
fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roster-review-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    for (f, text) in files {
        std::fs::write(dir.join(f), text).expect("write");
    }
    dir
}

fn acme() -> PathBuf {
    root().join("examples/acme")
}

fn json(o: &Outcome) -> Value {
    serde_json::from_str(&o.output).unwrap_or_else(|e| panic!("{e}: {}", o.output))
}

#[test]
fn the_acme_example_plans_clean_with_its_access_table() {
    let o = plan(&[acme()], &[], &opts(None), Format::Json).expect("plan");
    assert_eq!(o.code, 0, "{}", o.output);
    let v = json(&o);
    let org = &v["organizations"][0];
    assert_eq!(org["name"], "acme");
    assert_eq!(org["owner"], "alice@acme.example");
    let person = |email: &str| {
        org["people"]
            .as_array()
            .and_then(|p| p.iter().find(|x| x["email"] == email))
            .cloned()
            .unwrap_or_else(|| panic!("{email} missing"))
    };
    assert_eq!(person("alice@acme.example")["role"], "Owner");
    assert_eq!(person("ivan@acme.example")["cutOff"]["reason"], "Disabled");
    assert_eq!(
        person("ivan@acme.example")["projects"],
        serde_json::json!({})
    );
    assert_eq!(person("judy@acme.example")["mfa"], "Exempt");
    assert_eq!(
        person("dave@acme.example")["projects"]["payments"],
        "Developer"
    );
    // Nothing stored yet: the grace period runs from now.
    assert_eq!(
        person("dave@acme.example")["mfaDeadline"],
        "2026-11-26T12:00:00Z"
    );
    // mallory's membership ends 2026-12-31: still in.
    assert!(person("mallory@acme.example")["cutOff"].is_null());

    let table = plan(&[acme()], &[], &opts(None), Format::Table).expect("plan");
    assert!(table.output.contains("infra           acme-infra     ivan@acme.example     -          cut off: membership is disabled"), "{}", table.output);
    let md = plan(&[acme()], &[], &opts(None), Format::Markdown).expect("plan");
    assert!(md.output.contains("| payments | acme-payments | dave@acme.example | Developer | MFA due 2026-11-26 12:00 UTC |"), "{}", md.output);
}

/// Every file in examples/invalid fails offline with the very words the API server (or the
/// webhook) answers `kubectl apply` with — the `# expect:` line the cluster test checks.
#[test]
fn every_invalid_example_fails_offline_in_the_api_servers_words() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/invalid"))
        .expect("examples/invalid")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .expect("# expect: line");
        let o = plan(
            &[acme(), file.clone()],
            &[],
            &opts(Some("acme")),
            Format::Table,
        )
        .expect("plan");
        assert_eq!(o.code, 1, "{} passed:\n{}", file.display(), o.output);
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let line = o
            .output
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not named:\n{}", o.output));
        assert!(
            line.contains(expect),
            "{name}:\n want {expect}\n got  {line}"
        );
        assert!(
            line.contains(&format!("{}:", file.display())),
            "names the file: {line}"
        );
    }
}

#[test]
fn each_kind_of_violation_names_file_document_line_and_rule() {
    let org = "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: beta\n  namespace: beta\nspec:\n  owner: olga@beta.example\n";
    let m = |name: &str, email: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata:\n  name: {name}\n  namespace: beta\nspec:\n  email: {email}\n"
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "malformed YAML",
            format!("{org}---\nkind: [\n"),
            "MalformedYaml",
            "a.yaml:9 (document 2)",
        ),
        (
            "no kind",
            format!("{org}---\nmetadata:\n  name: x\n"),
            "MissingKind",
            "a.yaml:9 (document 2)",
        ),
        (
            "unknown kind",
            format!(
                "{org}---\napiVersion: roster.dev/v1alpha1\nkind: Team\nmetadata:\n  name: x\n  namespace: beta\n"
            ),
            "UnknownKind",
            "a.yaml:9",
        ),
        (
            "no namespace",
            format!(
                "{org}---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata:\n  name: web\nspec: {{}}\n"
            ),
            "NoNamespace",
            "a.yaml:9",
        ),
        (
            "declared twice",
            format!(
                "{org}---\n{}---\n{}",
                m("bob", "bob@beta.example"),
                m("bob", "bob@beta.example")
            ),
            "DeclaredTwice",
            "a.yaml:17 (document 3)",
        ),
        (
            "a second Membership of an address",
            format!(
                "{org}---\n{}---\n{}",
                m("bob", "bob@beta.example"),
                m("bobby", "bob@beta.example")
            ),
            "EmailNotUnique",
            "a.yaml:",
        ),
        (
            "an organization not named after its namespace",
            org.replace(
                "name: beta\n  namespace: beta",
                "name: gamma\n  namespace: beta",
            ),
            "OrganizationNameNotNamespace",
            "a.yaml:1",
        ),
        (
            "a project namespace of another organization",
            format!(
                "{org}---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata:\n  name: web\n  namespace: beta\nspec:\n  namespace: acme-web\n---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata:\n  name: web\n  namespace: acme\nspec: {{}}\n"
            ),
            "ProjectNamespaceTaken",
            "a.yaml:",
        ),
        (
            "a wrong type",
            format!(
                "{org}---\n{}  disabled: \"yes\"\n",
                m("bob", "bob@beta.example")
            ),
            "Schema",
            "a.yaml:9",
        ),
        // A name the API server refuses never reaches a table or a pull-request comment.
        (
            "a name that is no DNS name",
            format!(
                "{org}---\n{}",
                m("x](https://evil.example)", "bob@beta.example")
            ),
            "Schema",
            "a.yaml:9",
        ),
        (
            "a namespace that is no DNS label",
            format!(
                "{org}---\n{}",
                m("bob", "bob@beta.example").replace("namespace: beta", "namespace: \"Beta_NS\"")
            ),
            "Schema",
            "a.yaml:9",
        ),
    ];
    for (name, text, rule, at) in cases {
        let dir = tree("violation", &[("a.yaml", &text)]);
        let o = plan(std::slice::from_ref(&dir), &[], &opts(None), Format::Json).expect("plan");
        assert_eq!(o.code, 1, "{name}: {}", o.output);
        let v = json(&o);
        let found = v["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["rule"] == rule)
            .unwrap_or_else(|| panic!("{name}: no {rule} in {}", v["violations"]));
        let where_ = found["at"].as_str().unwrap_or_default();
        assert!(where_.contains(at), "{name}: at {where_}, want {at}");
        assert!(
            where_.starts_with(&dir.join("a.yaml").display().to_string()),
            "{where_}"
        );
    }
}

fn write_acme_change(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let mut files = Vec::new();
    for f in [
        "00-namespace.yaml",
        "10-organization.yaml",
        "20-projects.yaml",
        "30-memberships.yaml",
    ] {
        let text = std::fs::read_to_string(acme().join(f)).expect("read");
        files.push((f, edit(text)));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    tree(name, &refs)
}

/// A member's document in examples/acme/30-memberships.yaml, removed.
fn without_member(text: String, name: &str) -> String {
    text.split("\n---\n")
        .filter(|d| !d.contains(&format!("  name: {name}\n")))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn diff_tells_who_gains_and_loses_what() {
    // dave leaves (Member, payments Developer); erin's web Viewer becomes Developer; bob becomes
    // owner (alice an Admin, as after a transfer); the MFA grace period shrinks to 24h.
    let head = write_acme_change("head", |t| {
        let t = without_member(t, "dave");
        let t = t.replace(
            "Erin Evans\n  role: Member\n  projects:\n    - name: payments\n      role: Developer\n    - name: web\n      role: Viewer\n",
            "Erin Evans\n  role: Member\n  projects:\n    - name: payments\n      role: Developer\n    - name: web\n      role: Developer\n",
        );
        t.replace("owner: alice@acme.example", "owner: bob@acme.example")
            .replace("gracePeriod: 72h", "gracePeriod: 24h")
    });
    let o = diff(
        Base::Files(vec![acme()]),
        std::slice::from_ref(&head),
        &opts(None),
        None,
        Format::Json,
    )
    .expect("diff");
    assert_eq!(o.code, 0, "{}", o.output);
    let v = json(&o);
    let changes: Vec<String> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c["person"]["email"].as_str().unwrap_or(""),
                c["kind"].as_str().unwrap_or(""),
                c["scope"],
                c["after"]
            )
        })
        .collect();
    let has = |want: &str| {
        assert!(
            changes.iter().any(|c| c.starts_with(want)),
            "no `{want}` in {changes:#?}"
        )
    };
    has("dave@acme.example Lost {\"kind\":\"organization\"}");
    has("dave@acme.example Lost {\"kind\":\"project\",\"name\":\"payments\"}");
    has("alice@acme.example Lowered {\"kind\":\"organization\"} \"OrgAdmin\"");
    has("bob@acme.example Raised {\"kind\":\"organization\"} \"Owner\"");
    has("erin@acme.example Raised {\"kind\":\"project\",\"name\":\"web\"} \"Developer\"");
    assert_eq!(v["owners"][0]["before"], "alice@acme.example");
    assert_eq!(v["owners"][0]["after"], "bob@acme.example");
    assert_eq!(
        v["removals"].as_u64(),
        Some(
            changes
                .iter()
                .filter(|c| c.contains(" Lost ") || c.contains(" Lowered "))
                .count() as u64
        )
    );
    // The shorter grace period moves everyone's deadline earlier: listed with the new date.
    let cut: Vec<(String, String)> = v["cutOffs"]
        .as_array()
        .expect("cutOffs")
        .iter()
        .map(|c| {
            (
                c["email"].as_str().unwrap_or("").to_string(),
                c["at"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        cut.contains(&("erin@acme.example".into(), "2026-11-24T12:00:00Z".into())),
        "{cut:?}"
    );

    // Over the limit: exit 2 with the count; at it, 0.
    let removals = v["removals"].as_u64().expect("n") as usize;
    let o = diff(
        Base::Files(vec![acme()]),
        std::slice::from_ref(&head),
        &opts(None),
        Some(removals - 1),
        Format::Markdown,
    )
    .expect("diff");
    assert_eq!(o.code, 2);
    assert!(
        o.summary
            .as_deref()
            .is_some_and(|s| s.contains(&format!("{removals} access grant(s)")))
    );
    assert!(
        o.output
            .contains("| ➖ | dave@acme.example | acme | project payments | Developer | - |"),
        "{}",
        o.output
    );
    assert!(
        o.output
            .contains("Owner of `acme`: alice@acme.example → bob@acme.example"),
        "{}",
        o.output
    );
    let o = diff(
        Base::Files(vec![acme()]),
        &[head],
        &opts(None),
        Some(removals),
        Format::Table,
    )
    .expect("diff");
    assert_eq!(o.code, 0);

    // Disabling someone cuts them off now.
    let head = write_acme_change("disable", |t| {
        t.replace(
            "  email: frank@acme.example\n",
            "  email: frank@acme.example\n  disabled: true\n",
        )
    });
    let o = diff(
        Base::Files(vec![acme()]),
        &[head],
        &opts(None),
        None,
        Format::Json,
    )
    .expect("diff");
    let v = json(&o);
    assert_eq!(
        v["cutOffs"][0]["email"], "frank@acme.example",
        "{}",
        o.output
    );
    assert_eq!(v["cutOffs"][0]["at"], NOW);

    // No change, nothing to say.
    let o = diff(
        Base::Files(vec![acme()]),
        &[acme()],
        &opts(None),
        Some(0),
        Format::Json,
    )
    .expect("diff");
    let v = json(&o);
    assert_eq!(
        (
            o.code,
            v["removals"].as_u64(),
            v["changes"].as_array().map(Vec::len)
        ),
        (0, Some(0), Some(0))
    );
}

#[test]
fn as_a_person_the_webhooks_permission_rules_apply() {
    // With the cluster as it is (the base), a Member may change nothing and an Admin may not
    // touch the Organization; the owner may.
    let head = write_acme_change("as", |t| t.replace("sessionTTL: 8h", "sessionTTL: 4h"));
    let check = |who: &str| {
        let o = plan(
            std::slice::from_ref(&head),
            &[acme()],
            &as_user(who),
            Format::Json,
        )
        .expect("plan");
        let v = json(&o);
        let rules: Vec<String> = v["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x["rule"].as_str().unwrap_or("").to_string())
            .collect();
        (o.code, rules)
    };
    assert_eq!(
        check("dave@acme.example"),
        (1, vec!["MemberReadOnly".to_string()])
    );
    assert_eq!(
        check("bob@acme.example"),
        (1, vec!["OwnerOnly".to_string()])
    );
    assert_eq!(check("alice@acme.example"), (0, vec![]));
    assert_eq!(
        check("eve@evil.example"),
        (1, vec!["NotAMember".to_string()])
    );
    // A member of another organization is nobody here.
    assert_eq!(
        check("roster:beta:alice@acme.example"),
        (1, vec!["NotAMember".to_string()])
    );
    // Unchanged objects are not requests: only the Organization was judged.
    let unchanged = plan(
        &[acme()],
        &[acme()],
        &as_user("dave@acme.example"),
        Format::Json,
    )
    .expect("plan");
    assert_eq!(unchanged.code, 0, "{}", unchanged.output);
}

#[test]
fn a_generated_tree_of_twenty_organizations_plans_clean() {
    let now: k8s_openapi::jiff::Timestamp = NOW.parse().expect("now");
    let dir = tree(
        "large",
        &[(
            "tree.yaml",
            &crate::review::sample::tree_yaml("org-", 20, 10, 100, now),
        )],
    );
    let o = plan(&[dir], &[], &opts(None), Format::Json).expect("plan");
    assert_eq!(o.code, 0, "{}", &o.output[..o.output.len().min(2000)]);
    let v = json(&o);
    let orgs = v["organizations"].as_array().expect("orgs");
    assert_eq!(orgs.len(), 20);
    let people: usize = orgs
        .iter()
        .map(|o| o["people"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(people, 2000);
    let cut: usize = orgs
        .iter()
        .flat_map(|o| o["people"].as_array().into_iter().flatten())
        .filter(|p| !p["cutOff"].is_null())
        .count();
    // Per organization: disabled m007, m032, m057, m082 and expired m011, m041, m071.
    assert_eq!(cut, 20 * 7);
}

#[test]
fn standard_input_and_lists_are_read_like_files() {
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: roster.dev/v1alpha1\n  kind: Organization\n  metadata: {name: beta, namespace: beta}\n  spec: {owner: olga@beta.example}\n";
    let dir = tree("list", &[("list.yaml", list)]);
    let o = plan(&[dir], &[], &opts(None), Format::Json).expect("plan");
    assert_eq!(o.code, 0, "{}", o.output);
    assert_eq!(json(&o)["organizations"][0]["owner"], "olga@beta.example");
    let missing = plan(
        &[Path::new("/nonexistent/roster").to_path_buf()],
        &[],
        &opts(None),
        Format::Json,
    );
    assert!(missing.is_err_and(|e| e.to_string().contains("/nonexistent/roster")));
}

/// The GitOps examples are well-formed, name all three kinds in Argo CD's health checks, and
/// a tree holding them (other kinds) is judged without error.
#[test]
fn the_gitops_examples_are_well_formed() {
    let dir = root().join("examples/gitops");
    let mut seen = 0;
    for sub in ["flux", "argocd", "ci"] {
        for e in std::fs::read_dir(dir.join(sub)).expect("dir").flatten() {
            let text = std::fs::read_to_string(e.path()).expect("read");
            for doc in text.split("\n---\n") {
                let _: Value = serde_saphyr::from_str(doc)
                    .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 5);
    let health = std::fs::read_to_string(dir.join("argocd/argocd-cm-health.yaml")).expect("read");
    for kind in ["Organization", "Project", "Membership"] {
        assert!(
            health.contains(&format!("resource.customizations.health.roster.dev_{kind}")),
            "{kind}"
        );
    }
    assert!(health.contains("\"Stalled\"") && health.contains("Degraded"));
    let flux = std::fs::read_to_string(dir.join("flux/kustomization.yaml")).expect("read");
    assert!(flux.contains("wait: true"));
    // Manifests of other kinds pass through; a CI workflow is no manifest (kubectl says so too).
    let o = plan(
        &[dir.join("flux"), dir.join("argocd"), acme()],
        &[],
        &opts(None),
        Format::Json,
    )
    .expect("plan");
    assert_eq!(o.code, 0, "{}", o.output);
    let o = plan(&[dir.join("ci")], &[], &opts(None), Format::Json).expect("plan");
    assert_eq!(o.code, 1);
    assert!(o.output.contains("MissingKind"), "{}", o.output);
}

/// A hostile tree cannot put a link, an image or a terminal escape sequence into the review a
/// reviewer reads: names are the API server's (DNS names), Markdown is escaped, control
/// characters are dropped.
#[test]
fn a_hostile_tree_cannot_write_markdown_or_escape_sequences_into_the_review() {
    let hostile = "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata:\n  name: \"[click](https://evil.example)\"\n  namespace: beta\nspec:\n  email: bob@beta.example\n---\nkind: [\"\\x1b[31mred ![img](https://evil.example/x.png)\n";
    let dir = tree("hostile", &[("a.yaml", hostile)]);
    let md = plan(
        std::slice::from_ref(&dir),
        &[],
        &opts(None),
        Format::Markdown,
    )
    .expect("plan");
    assert_eq!(md.code, 1);
    assert!(
        !md.output.contains("[click](") && !md.output.contains("![img]("),
        "{}",
        md.output
    );
    assert!(md.output.contains("\\[click\\]"), "{}", md.output);
    let table = plan(std::slice::from_ref(&dir), &[], &opts(None), Format::Table).expect("plan");
    assert!(!table.output.contains('\u{1b}'), "{:?}", table.output);
}

/// Against the cluster, roster's own bootstrap Membership of an owner is no part of a tree in
/// Git: its absence from the head is no deletion to judge.
#[test]
fn roster_s_bootstrap_membership_is_not_a_deletion() {
    let org = "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: beta\n  namespace: beta\nspec:\n  owner: olga@beta.example\n";
    let boot = "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata:\n  name: owner-olga\n  namespace: beta\n  labels: {roster.dev/bootstrap: owner}\nspec:\n  email: olga@beta.example\n  role: Admin\n";
    let base = tree("boot-base", &[("a.yaml", &format!("{org}---\n{boot}"))]);
    let head = tree("boot-head", &[("a.yaml", org)]);
    let o = diff(
        Base::Files(vec![base]),
        &[head],
        &opts(None),
        Some(0),
        Format::Json,
    )
    .expect("diff");
    assert_eq!(o.code, 0, "{}", o.output);
    let v = json(&o);
    assert_eq!(v["removals"].as_u64(), Some(0), "{v}");
}
