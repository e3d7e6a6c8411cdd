//! "One generic error": every way a login can fail short of a lockout answers the same status
//! and the same bytes, on the API and on the login page, so an outsider learns nothing about
//! which organizations, addresses, passwords or enrolments exist; and none answers before the
//! failure floor (`--login-failure-floor`). That the answer times then match is measured in
//! `make bench` (BENCHMARKS.md), not timed here.

use crate::harness::{Cluster, PASSWORD, accept, cluster, identity_request, shared};
use crate::members::{apply, code, enrol_on_page, login_api, post_form, unix, wait_field};

/// Enrols `member` (invitation accepted with PASSWORD, MFA required) and returns the TOTP seed.
async fn accept_and_enrol(c: &Cluster, ns: &str, member: &str) -> Vec<u8> {
    let page = accept(c, ns, member).await;
    assert!(page.contains("two-factor"), "{page}");
    let email = format!("{member}@acme.example");
    let (status, page) = post_form(
        c,
        "/login",
        &[
            ("organization", ns),
            ("email", &email),
            ("password", PASSWORD),
            ("code", ""),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    enrol_on_page(c, ns, member, &page).await.0
}

/// A six-digit code that is none of the codes the server would accept now (one step of skew).
fn wrong_code(seed: &[u8]) -> String {
    let step = unix() / 30;
    let valid: Vec<String> = (step.saturating_sub(2)..=step + 2)
        .map(|s| code(seed, s))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", n * 111_111 % 1_000_000))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_failure_answers_the_same_bytes() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("samefail");
    let member = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{email: {name}@acme.example, role: Member{extra}}}\n"
        )
    };
    let mut yaml = format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {ns}, namespace: {ns}}}\nspec: {{owner: olga@acme.example, security: {{mfa: {{required: true}}, lockout: {{maxFailedAttempts: 5, lockDuration: 15m}}}}}}\n"
    );
    for name in ["pat", "cody", "ines", "dina"] {
        yaml.push_str(&member(name, ""));
    }
    apply(c, &yaml);
    let pat = accept_and_enrol(c, &ns, "pat").await;
    let cody = accept_and_enrol(c, &ns, "cody").await;
    accept_and_enrol(c, &ns, "dina").await;
    c.kubectl_ok(&[
        "patch",
        "membership",
        "dina",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);
    wait_field(c, &ns, "dina", ".status.phase", "Disabled");

    // Enrolment used the current step's code (replays are refused): the next step's is fresh
    // and accepted (one step of skew).
    let pat_code = code(&pat, unix() / 30 + 1);
    let cody_wrong = wrong_code(&cody);
    // (what, organization, e-mail, password, code); ines was invited and never accepted.
    let cases: Vec<(&str, &str, &str, &str, Option<&str>)> = vec![
        (
            "no such organization",
            "no-such-org",
            "pat@acme.example",
            PASSWORD,
            Some(&pat_code),
        ),
        (
            "no such address",
            &ns,
            "nobody@acme.example",
            PASSWORD,
            Some(&pat_code),
        ),
        (
            "wrong password, right code",
            &ns,
            "pat@acme.example",
            "wrong password 1",
            Some(&pat_code),
        ),
        (
            "right password, wrong code",
            &ns,
            "cody@acme.example",
            PASSWORD,
            Some(&cody_wrong),
        ),
        (
            "right password, no code",
            &ns,
            "cody@acme.example",
            PASSWORD,
            None,
        ),
        (
            "invited, never accepted",
            &ns,
            "ines@acme.example",
            PASSWORD,
            None,
        ),
        ("disabled", &ns, "dina@acme.example", PASSWORD, None),
    ];
    let mut api_answers = Vec::new();
    let mut page_answers = Vec::new();
    for (what, org, email, password, code) in &cases {
        let body = serde_json::json!({"organization": org, "email": email,
            "password": password, "code": code});
        let sent = std::time::Instant::now();
        let (status, text) = identity_request(
            c,
            "POST",
            "/api/v1/login",
            "application/json",
            &body.to_string(),
        )
        .await;
        // The answer waits for the floor (roster run's default, 250 ms): a lower bound, so
        // not a timing test; that the kinds then look alike in time is measured in make bench.
        assert!(
            sent.elapsed() >= std::time::Duration::from_millis(250),
            "{what} answered in {:?}, before the failure floor",
            sent.elapsed()
        );
        api_answers.push((*what, status, text));
        let (status, page) = post_form(
            c,
            "/login",
            &[
                ("organization", org),
                ("email", email),
                ("password", password),
                ("code", code.unwrap_or("")),
            ],
        )
        .await;
        // The page fills the form in again with what was typed (never the password): the rest
        // must be the same.
        let page = page
            .replace(&format!("value=\"{org}\""), "value=\"ORG\"")
            .replace(&format!("value=\"{email}\""), "value=\"EMAIL\"");
        page_answers.push((*what, status, page));
    }
    for answers in [&api_answers, &page_answers] {
        let (first, status, bytes) = &answers[0];
        assert_eq!(*status, 401, "{first}: {bytes}");
        for (what, s, b) in answers.iter().skip(1) {
            assert_eq!(
                (s, b),
                (status, bytes),
                "{what} answers differently from {first}"
            );
        }
    }
    // A password typed into the e-mail field (and one into the organization field) is logged
    // as a digest, never as typed.
    let typed = format!("Hunter2-in-the-wrong-field-{ns}");
    for (org, email) in [
        (ns.as_str(), typed.as_str()),
        (typed.as_str(), "pat@acme.example"),
    ] {
        let (status, _) = login_api(c, org, email, PASSWORD, None).await;
        assert_eq!(status, 401);
    }
    let lines = std::fs::read_to_string(c.dir.join("security.jsonl")).expect("security lines");
    let log = std::fs::read_to_string(c.dir.join("roster.log")).expect("roster's log");
    assert!(lines.contains("typed:"), "the digests are logged");
    assert!(
        !lines.contains(&typed),
        "what was typed for nobody is in the security lines"
    );
    assert!(
        !log.contains(&typed),
        "what was typed for nobody is in roster's log"
    );
    // The twin: with the right password and code the same member gets in.
    let (status, body) = login_api(c, &ns, "pat@acme.example", PASSWORD, Some(&pat_code)).await;
    assert_eq!(status, 200, "{body}");
}
