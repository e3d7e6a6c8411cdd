//! HTTP-level tests of the identity router, without an API server: every path here is decided
//! from the caches and the keys (the ones that need the credential store are in the cluster
//! tests). The client points at a closed port, so an accidental API call fails the test.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::runtime::reflector::{self, Store as Cache};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::api::{Membership, Organization};
use crate::fixtures::{NS, member, org};
use crate::identity::audit::SecurityLog;
use crate::identity::password::Hasher;
use crate::identity::revocation::Revocations;
use crate::identity::service::{Identity, Keys};
use crate::identity::store::{Record, Store};
use crate::identity::token::{self, Claims, Signer};
use crate::identity::{random, seal};

const OWN_NS: &str = "roster-system";
const KEY: [u8; 32] = [7; 32];

fn cache<K>(objects: Vec<K>) -> Cache<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    store
}

fn credential(email: &str, r: &Record) -> KubeSecret {
    KubeSecret {
        metadata: kube::api::ObjectMeta {
            name: Some(Store::secret_name(NS, email)),
            namespace: Some(OWN_NS.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "record".to_string(),
            ByteString(serde_json::to_vec(r).expect("json")),
        )])),
        ..Default::default()
    }
}

struct Fixture {
    state: Arc<AppState>,
}

fn fixture(members: Vec<Membership>, generation: u64) -> Fixture {
    let client = kube::Client::try_from(kube::Config::new(
        "https://127.0.0.1:9".parse().expect("url"),
    ))
    .expect("client");
    let (seal_key, _) = seal::Key::generate();
    let identity = Identity::new(
        client,
        OWN_NS,
        Keys {
            seal: seal_key,
            signer: Signer::new(&KEY),
        },
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        "https://id.acme.example".into(),
        None,
        SecurityLog::print_only(),
    );
    let creds = members
        .iter()
        .map(|m| {
            credential(
                &m.spec.email,
                &Record {
                    email: m.spec.email.clone(),
                    generation,
                    accepted_at: Some(1),
                    ..Default::default()
                },
            )
        })
        .collect();
    let mut o: Organization = org("alice@acme.example");
    o.spec.security.mfa.required = true;
    Fixture {
        state: Arc::new(AppState {
            identity: Arc::new(identity),
            orgs: cache(vec![o]),
            memberships: cache(members),
            credentials: cache(creds),
            subject_prefix: "roster:".into(),
            revocations: Revocations::default(),
        }),
    }
}

fn bob() -> Membership {
    let mut m = member("bob", None, &[]);
    m.metadata.uid = Some("bob-uid".into());
    m
}

async fn call(
    f: &Fixture,
    method: &str,
    path: &str,
    ctype: &str,
    body: String,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(body))
        .expect("request");
    let resp = router(f.state.clone())
        .oneshot(req)
        .await
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn claims(generation: u64, purpose: &str, exp: u64) -> Claims {
    Claims {
        org: NS.into(),
        membership: "bob".into(),
        email: "bob@acme.example".into(),
        generation,
        iat: 1,
        exp,
        purpose: purpose.into(),
    }
}

async fn review(f: &Fixture, token: &str) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]}});
    let (status, _, text) = call(
        f,
        "POST",
        "/authenticate",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("TokenReview JSON")
}

#[tokio::test]
async fn token_review_checks_signature_purpose_generation_and_the_member_now() {
    let f = fixture(vec![bob()], 3);
    let later = super::now() + 3600;
    let good = Signer::new(&KEY).sign(&claims(3, token::SESSION, later));
    let v = review(&f, good.expose()).await;
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    assert_eq!(v["status"]["user"]["username"], "roster:bob@acme.example");
    assert_eq!(v["status"]["user"]["uid"], "bob-uid");
    assert_eq!(v["status"]["user"]["groups"], json!(["roster:acme"]));
    assert_eq!(
        v["status"]["user"]["extra"],
        json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]}),
        "what /authorize needs comes back in SubjectAccessReviews"
    );
    assert_eq!(
        v["status"]["audiences"],
        json!(["https://kubernetes.default.svc"])
    );
    assert_eq!(v["kind"], "TokenReview");

    let other_roster = Signer::new(&random::<32>()).sign(&claims(3, token::SESSION, later));
    let cases = [
        (
            "another roster's key",
            other_roster.expose().to_string(),
            "TokenBadSignature",
        ),
        (
            "an old generation",
            Signer::new(&KEY)
                .sign(&claims(2, token::SESSION, later))
                .expose()
                .to_string(),
            "TokenRevoked",
        ),
        (
            "an enrolment ticket",
            Signer::new(&KEY)
                .sign(&claims(3, token::ENROL, later))
                .expose()
                .to_string(),
            "TokenWrongPurpose",
        ),
        (
            "an expired token",
            Signer::new(&KEY)
                .sign(&claims(3, token::SESSION, 10))
                .expose()
                .to_string(),
            "TokenExpired",
        ),
        ("garbage", "roster.v1.xx.yy".to_string(), "TokenMalformed"),
        (
            "a foreign token",
            "eyJhbGciOiJSUzI1NiJ9.e30.sig".to_string(),
            "TokenMalformed",
        ),
        (
            "tampered",
            format!("{}A", good.expose()),
            "TokenBadSignature",
        ),
    ];
    for (name, token, reason) in cases {
        let v = review(&f, &token).await;
        assert_eq!(v["status"]["authenticated"], false, "{name}: {v}");
        assert_eq!(v["status"]["error"], format!("roster: {reason}"), "{name}");
        assert!(v["status"]["user"].is_null(), "{name}");
    }

    // Cut off now: by the webhook's note, before any cache knows.
    f.state.revocations.note(NS, "bob@acme.example");
    let v = review(&f, good.expose()).await;
    assert_eq!(v["status"]["error"], "roster: Revoked");

    let mut disabled = bob();
    disabled.spec.disabled = true;
    let f = fixture(vec![disabled], 3);
    let v = review(&f, good.expose()).await;
    assert_eq!(v["status"]["error"], "roster: Disabled");
    let f = fixture(vec![], 3);
    let v = review(&f, good.expose()).await;
    assert_eq!(v["status"]["error"], "roster: MemberGone");

    let (status, _, text) = call(&f, "POST", "/authenticate", "application/json", "{".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
}

#[tokio::test]
async fn login_rejects_bad_input_with_a_clear_error_and_never_reaches_the_store() {
    let mut disabled = member("dave", None, &[]);
    disabled.spec.disabled = true;
    let f = fixture(vec![bob(), disabled], 0);
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("not JSON", "{".into(), StatusCode::BAD_REQUEST, "Malformed"),
        ("wrong type", json!({"organization": 1, "email": "a", "password": "b"}).to_string(), StatusCode::BAD_REQUEST, "Malformed"),
        ("missing field", json!({"organization": NS, "email": "a"}).to_string(), StatusCode::BAD_REQUEST, "Malformed"),
        ("unknown field", json!({"organization": NS, "email": "a", "password": "b", "admin": true}).to_string(), StatusCode::BAD_REQUEST, "Malformed"),
        ("long organization", json!({"organization": "o".repeat(64), "email": "a", "password": "b"}).to_string(), StatusCode::BAD_REQUEST, "Malformed"),
        ("long code", json!({"organization": NS, "email": "bob@acme.example", "password": "b", "code": "1".repeat(40)}).to_string(), StatusCode::BAD_REQUEST, "Malformed"),
        ("unknown member", json!({"organization": NS, "email": "nobody@acme.example", "password": "b"}).to_string(), StatusCode::UNAUTHORIZED, "InvalidCredentials"),
        ("unknown organization", json!({"organization": "globex", "email": "bob@acme.example", "password": "b"}).to_string(), StatusCode::UNAUTHORIZED, "InvalidCredentials"),
        ("disabled member", json!({"organization": NS, "email": "dave@acme.example", "password": "b"}).to_string(), StatusCode::UNAUTHORIZED, "InvalidCredentials"),
    ];
    for (name, body, want, reason) in cases {
        let (status, _, text) = call(&f, "POST", "/api/v1/login", "application/json", body).await;
        assert_eq!(status, want, "{name}: {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{name}: JSON error body, got {text}"));
        assert_eq!(v["reason"], reason, "{name}: {text}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}");
    }
    // Unknown and disabled members get exactly the text a wrong password gets.
    let (_, _, a) = call(
        &f,
        "POST",
        "/api/v1/login",
        "application/json",
        json!({"organization": NS, "email": "nobody@acme.example", "password": "b"}).to_string(),
    )
    .await;
    let (_, _, b) = call(
        &f,
        "POST",
        "/api/v1/login",
        "application/json",
        json!({"organization": NS, "email": "dave@acme.example", "password": "b"}).to_string(),
    )
    .await;
    assert_eq!(a, b);

    let huge =
        json!({"organization": NS, "email": "bob@acme.example", "password": "x".repeat(1 << 20)})
            .to_string();
    let (status, _, _) = call(&f, "POST", "/api/v1/login", "application/json", huge).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "a 1 MiB password is refused unread"
    );
}

#[tokio::test]
async fn pages_are_escaped_locked_down_and_fail_clearly() {
    let f = fixture(vec![bob()], 0);
    let (status, headers, page) = call(
        &f,
        "GET",
        "/login?organization=%3Cscript%3E&email=a%22b",
        "text/plain",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("&lt;script&gt;") && !page.contains("<script>"),
        "{page}"
    );
    assert!(page.contains("a&quot;b"));
    assert!(page.contains("<label for=\"password\">") && page.contains("lang=\"en\""));
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(
        headers.get(header::REFERRER_POLICY).map(|v| v.as_bytes()),
        Some(&b"no-referrer"[..])
    );
    assert_eq!(
        headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );

    let (status, _, page) = call(
        &f,
        "GET",
        "/accept?org=acme&member=nobody&token=x",
        "text/plain",
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        page.contains("not valid") && page.contains("role=\"alert\""),
        "{page}"
    );

    let (status, _, page) = call(
        &f,
        "POST",
        "/enrol",
        "application/x-www-form-urlencoded",
        "ticket=forged&code=123456".into(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("expired"), "{page}");
    // A session token is not an enrolment ticket.
    let session = Signer::new(&KEY).sign(&claims(0, token::SESSION, super::now() + 60));
    let (status, _, _) = call(
        &f,
        "POST",
        "/enrol",
        "application/x-www-form-urlencoded",
        format!("ticket={}&code=123456", session.expose()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, page) = call(
        &f,
        "POST",
        "/login",
        "application/x-www-form-urlencoded",
        "organization=acme&email=nobody%40acme.example&password=x&code=".into(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        page.contains("not correct") && page.contains("role=\"alert\""),
        "{page}"
    );
    let (status, _, _) = call(
        &f,
        "POST",
        "/login",
        "application/x-www-form-urlencoded",
        "garbage".into(),
    )
    .await;
    assert_eq!(
        status.as_u16() / 100,
        4,
        "a malformed form is a client error"
    );
    let (status, headers, _) = call(&f, "GET", "/", "text/plain", String::new()).await;
    assert!(status.is_redirection());
    assert_eq!(
        headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/login"[..])
    );
}

async fn authorize(f: &Fixture, groups: Value, extra: Value) -> Value {
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob@acme.example", "groups": groups, "extra": extra,
                 "resourceAttributes": {"verb": "get", "resource": "configmaps", "namespace": "acme-payments"}}});
    let (status, _, text) = call(
        f,
        "POST",
        "/authorize",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("SubjectAccessReview JSON")
}

#[tokio::test]
async fn authorization_denies_members_no_longer_in_good_standing_and_otherwise_abstains() {
    let f = fixture(vec![bob()], 3);
    let ours = json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]});
    let abstain = json!({"allowed": false});
    let v = authorize(
        &f,
        json!(["roster:acme", "system:authenticated"]),
        ours.clone(),
    )
    .await;
    assert_eq!(v["status"], abstain, "in good standing: RBAC decides");
    assert_eq!(v["kind"], "SubjectAccessReview");
    let v = authorize(&f, json!(["system:authenticated"]), json!({})).await;
    assert_eq!(v["status"], abstain, "not one of roster's members");
    let v = authorize(&f, json!(["roster:acme"]), json!({})).await;
    assert_eq!(
        v["status"], abstain,
        "a look-alike group from another authenticator"
    );

    let old = json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["2"]});
    let v = authorize(&f, json!(["roster:acme"]), old).await;
    assert_eq!(v["status"]["denied"], true);
    assert_eq!(v["status"]["reason"], "roster: TokenRevoked");
    let gone = json!({"roster.dev/membership": ["zoe"], "roster.dev/generation": ["3"]});
    let v = authorize(&f, json!(["roster:acme"]), gone).await;
    assert_eq!(v["status"]["reason"], "roster: MemberGone");

    f.state.revocations.note(NS, "bob@acme.example");
    let v = authorize(&f, json!(["roster:acme"]), ours).await;
    assert_eq!(v["status"]["denied"], true);
    assert_eq!(v["status"]["reason"], "roster: Revoked");

    let (status, _, _) = call(&f, "POST", "/authorize", "application/json", "[]".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
