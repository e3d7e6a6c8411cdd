//! The identity pages in headless Chromium (Debian's, driven by playwright-core from
//! tests/browser): a newcomer clicks through accept → password → TOTP → login → account.
//! Screenshots land in target/browser-artifacts/<test process id>/ (concurrent runs keep theirs).

use std::process::Command;

use crate::harness::{cluster, link, root, shared};

#[test]
fn a_newcomer_clicks_through_in_chromium() {
    let _api = shared();
    let c = cluster();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (`apt-get install chromium`) or set CHROMIUM"
    );
    let browser = root().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (make test does)"
    );
    let ns = c.namespace("browser");
    let yaml = format!(
        r#"apiVersion: roster.dev/v1alpha1
kind: Organization
metadata: {{name: {ns}, namespace: {ns}}}
spec:
  owner: erin@acme.example
  security: {{mfa: {{required: true}}}}
"#
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The owner is invited like everyone else (bootstrap Membership owner-erin).
    let link = format!("https://{}{}", c.identity_addr, link(c, &ns, "owner-erin"));
    let artifacts = root().join(format!("target/browser-artifacts/{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&artifacts);
    let out = Command::new("node")
        .arg(browser.join("flow.mjs"))
        .env("ACCEPT_URL", &link)
        .env("ORG", &ns)
        .env("EMAIL", "erin@acme.example")
        .env("PASSWORD", "a long and unusual passphrase 7")
        .env("OUT_DIR", &artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "the browser flow failed (screenshots in {}):\n{}\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in ["1-accept", "2-enrol", "3-login", "4-account"] {
        let p = artifacts.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
            "{} missing",
            p.display()
        );
    }
}
