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
use kube::runtime::reflector;

use crate::cache::Store as Cache;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, api_server_router, router};
use crate::api::{Membership, Organization};
use crate::cache::Credential;
use crate::fixtures::{NS, member, org};
use crate::identity::audit::SecurityLog;
use crate::identity::limit::Limits;
use crate::identity::password::Hasher;
use crate::identity::revocation::Revocations;
use crate::identity::service::{Identity, Keys};
use crate::identity::store::{Record, Store};
use crate::identity::token::{self, Claims, Signer};
use crate::identity::{random, seal};

const OWN_NS: &str = "roster-system";
const KEY: [u8; 32] = [7; 32];
/// The API server's audience in these tests.
const AUD: &str = "https://kubernetes.default.svc";

pub(super) fn cache<K>(objects: Vec<K>) -> Cache<K>
where
    K: reflector::Lookup<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = crate::cache::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    store
}

/// The Membership cache holding `members`.
pub(super) fn members_cache(members: Vec<crate::api::Membership>) -> crate::cache::Members {
    let (store, _, mut writer) = crate::cache::members();
    for m in members {
        writer.apply(watcher::Event::Apply(m));
    }
    store
}

fn credential(email: &str, r: &Record) -> Credential {
    credential_in(NS, email, r)
}

fn credential_in(org: &str, email: &str, r: &Record) -> Credential {
    Credential::of(&KubeSecret {
        metadata: kube::api::ObjectMeta {
            name: Some(Store::secret_name(org, email)),
            namespace: Some(OWN_NS.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "record".to_string(),
            ByteString(serde_json::to_vec(r).expect("json")),
        )])),
        ..Default::default()
    })
}

struct Fixture {
    state: Arc<AppState>,
    /// Feeds the credential cache, as the watch does.
    creds: crate::cache::Writer<Credential>,
}

fn fixture(members: Vec<Membership>, generation: u64) -> Fixture {
    fixture_with(members, generation, Limits::off())
}

fn fixture_with(members: Vec<Membership>, generation: u64, limits: Limits) -> Fixture {
    let mut o: Organization = org("alice@acme.example");
    o.spec.security.mfa.required = true;
    fixture_of(members, generation, limits, vec![o])
}

fn fixture_of(
    members: Vec<Membership>,
    generation: u64,
    limits: Limits,
    orgs: Vec<Organization>,
) -> Fixture {
    let client = kube::Client::try_from(kube::Config::new(
        "https://127.0.0.1:9".parse().expect("url"),
    ))
    .expect("client");
    let (seal_key, _) = seal::Key::generate();
    let creds: Vec<Credential> = members
        .iter()
        .map(|m| {
            credential_in(
                m.metadata.namespace.as_deref().unwrap_or(NS),
                &m.spec.email,
                &Record {
                    email: m.spec.email.clone(),
                    membership_uid: m.metadata.uid.clone(),
                    generation,
                    accepted_at: Some(1),
                    ..Default::default()
                },
            )
        })
        .collect();
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
    let (creds_cache, mut creds_writer) = crate::cache::store();
    for c in creds {
        creds_writer.apply_watcher_event(&watcher::Event::Apply(c));
    }
    let identity = identity.with_credential_cache(creds_cache);
    Fixture {
        creds: creds_writer,
        state: Arc::new(AppState {
            identity: Arc::new(identity),
            orgs: cache(orgs),
            memberships: members_cache(members),
            revocations: Revocations::default(),
            limits,
            audiences: vec![AUD.into()],
            cluster: None,
            emails: None,
        }),
    }
}

/// An Organization named like acme in another namespace (one made before the webhook ran, or
/// by whoever may create objects there) is not acme's: its password rule is not acme's
/// (red team of the cache store: the rule was taken from whichever came first).
#[tokio::test]
async fn the_password_rule_is_the_organization_s_own_not_a_namesake_s() {
    let rule = |orgs: Vec<Organization>| {
        super::pages::min_length(&fixture_of(vec![bob()], 0, Limits::off(), orgs).state, NS)
    };
    let mut namesake = org("eve@evil.example");
    namesake.metadata.namespace = Some("evil".into());
    namesake.spec.security.password_min_length = 40;
    let mut own = org("alice@acme.example");
    own.spec.security.password_min_length = 20;
    let default = crate::api::SecurityPolicy::default().password_min_length;
    assert_eq!(rule(vec![namesake.clone()]), default);
    assert_eq!(rule(vec![namesake, own]), 20);
}

pub(super) fn bob() -> Membership {
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
    // The API server's endpoints are served on a listener of their own (mTLS).
    let app = if matches!(path, "/authenticate" | "/authorize") {
        api_server_router(f.state.clone())
    } else {
        router(f.state.clone())
    };
    let resp = app.oneshot(req).await.expect("response");
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
        uid: "bob-uid".into(),
        email: "bob@acme.example".into(),
        generation,
        iat: 1,
        exp,
        purpose: purpose.into(),
        aud: vec![AUD.into()],
    }
}

async fn review(f: &Fixture, token: &str) -> Value {
    review_for(f, token, json!([AUD])).await
}

async fn review_for(f: &Fixture, token: &str, audiences: Value) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
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
    assert_eq!(
        v["status"]["user"]["username"], "roster:acme:bob@acme.example",
        "a user name of this organization alone"
    );
    assert_eq!(v["status"]["user"]["uid"], "bob-uid");
    assert_eq!(v["status"]["user"]["groups"], json!(["roster:acme"]));
    assert_eq!(
        v["status"]["user"]["extra"],
        json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]}),
        "what /authorize needs comes back in SubjectAccessReviews"
    );
    assert_eq!(v["status"]["audiences"], json!([AUD]));
    assert_eq!(v["kind"], "TokenReview");
    // No audience named: the API server's own; another service's audience: refused.
    let v = review_for(&f, good.expose(), json!(null)).await;
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    assert!(v["status"]["audiences"].is_null(), "{v}");
    let v = review_for(&f, good.expose(), json!(["https://vault.example", AUD])).await;
    assert_eq!(v["status"]["audiences"], json!([AUD]), "the intersection");
    let v = review_for(&f, good.expose(), json!(["https://vault.example"])).await;
    assert_eq!(v["status"]["error"], "roster: TokenWrongAudience", "{v}");

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
        (
            "a token of a deleted namesake (another UID)",
            Signer::new(&KEY)
                .sign(&Claims {
                    uid: "uid-of-a-deleted-bob".into(),
                    ..claims(3, token::SESSION, later)
                })
                .expose()
                .to_string(),
            "MemberGone",
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
    f.state.revocations.note("bob-uid");
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
    authorize_as(f, "roster:acme:bob@acme.example", groups, extra).await
}

async fn authorize_as(f: &Fixture, user: &str, groups: Value, extra: Value) -> Value {
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "uid": "bob-uid", "groups": groups, "extra": extra,
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
    let v = authorize_as(
        &f,
        "alice@acme.example",
        json!(["system:authenticated"]),
        json!({}),
    )
    .await;
    assert_eq!(v["status"], abstain, "not one of roster's members");
    let v = authorize_as(&f, "bob@acme.example", json!(["roster:acme"]), ours.clone()).await;
    assert_eq!(
        v["status"], abstain,
        "a look-alike group from another authenticator: not roster's user name"
    );
    let v = authorize(&f, json!(["roster:acme"]), json!({})).await;
    assert_eq!(v["status"]["reason"], "roster: TokenMalformed");

    let old = json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["2"]});
    let v = authorize(&f, json!(["roster:acme"]), old).await;
    assert_eq!(v["status"]["denied"], true);
    assert_eq!(v["status"]["reason"], "roster: TokenRevoked");
    let gone = json!({"roster.dev/membership": ["zoe"], "roster.dev/generation": ["3"]});
    let v = authorize(&f, json!(["roster:acme"]), gone).await;
    assert_eq!(v["status"]["reason"], "roster: MemberGone");

    f.state.revocations.note("bob-uid");
    let v = authorize(&f, json!(["roster:acme"]), ours).await;
    assert_eq!(v["status"]["denied"], true);
    assert_eq!(v["status"]["reason"], "roster: Revoked");

    let (status, _, _) = call(&f, "POST", "/authorize", "application/json", "[]".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// `/authorize` reads only who asks of a review, but still refuses what is not a
/// SubjectAccessReview, with the reason, and answers one that is: the allowed twin first.
#[tokio::test]
async fn authorization_refuses_what_is_not_a_subject_access_review() {
    let f = fixture(vec![bob()], 3);
    let spec = json!({"user": "roster:acme:bob@acme.example", "uid": "bob-uid",
        "extra": {"roster.dev/membership": ["bob"], "roster.dev/generation": ["2"]}});
    let review = |api_version: &str, kind: &str| {
        json!({"apiVersion": api_version, "kind": kind, "spec": spec}).to_string()
    };
    let post = |body: String| call(&f, "POST", "/authorize", "application/json", body);
    let (status, _, text) = post(review("authorization.k8s.io/v1", "SubjectAccessReview")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("TokenRevoked"), "{text}");
    // As the API server sends them: metadata, status, groups and either kind of attributes;
    // extra null and no uid for someone else's user.
    let sar = "authorization.k8s.io/v1";
    for (spec, says) in [
        (
            json!({"user": "roster:acme:bob@acme.example", "uid": "bob-uid",
                "groups": ["roster:acme", "system:authenticated"],
                "extra": {"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]},
                "resourceAttributes": {"namespace": "acme-payments", "verb": "get", "version": "v1",
                    "resource": "configmaps", "fieldSelector": {"requirements": []}}}),
            r#""status":{"allowed":false}}"#,
        ),
        (
            json!({"user": "roster:acme:bob@acme.example", "uid": "bob-uid", "groups": [],
                "extra": {"roster.dev/membership": ["bob"], "roster.dev/generation": ["2"]},
                "nonResourceAttributes": {"path": "/version", "verb": "get"}}),
            "TokenRevoked",
        ),
        (
            json!({"user": "system:serviceaccount:acme:ci", "extra": null,
                "nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
            r#""status":{"allowed":false}}"#,
        ),
    ] {
        let body = json!({"apiVersion": sar, "kind": "SubjectAccessReview",
            "metadata": {"creationTimestamp": null}, "spec": spec, "status": {"allowed": false}});
        let (status, _, text) = post(body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    // Red team 46: as Go writes them. An extra whose value is a nil list (null) beside
    // roster's own; escaped strings; no extra at all for one of roster's users (refused, not
    // malformed); a label selector of 64 KiB (the body limit was 16 KiB: 413, a denial).
    let escaped = r#"{"apiVersion":"authorization.k8s.io\u002fv1","kind":"SubjectAccess\u0052eview",
        "spec":{"user":"roster:acme:bob\u0040acme.example","uid":"bob-uid",
        "extra":{"roster.dev/membership":["bob"],"roster.dev/generation":["3"],"scopes":null}}}"#;
    let selector = "app in (".to_string() + &"a,".repeat(32 * 1024) + "b)";
    for (body, says) in [
        (escaped.to_string(), r#""status":{"allowed":false}}"#),
        (
            json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": {"user": "roster:acme:bob@acme.example", "uid": "bob-uid", "extra": null}})
            .to_string(),
            "TokenMalformed",
        ),
        (
            json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": {"user": "roster:acme:bob@acme.example", "uid": "bob-uid",
                    "extra": {"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]},
                    "resourceAttributes": {"verb": "list", "resource": "pods",
                        "namespace": "acme-payments", "labelSelector": {"rawSelector": selector}}}})
            .to_string(),
            r#""status":{"allowed":false}}"#,
        ),
    ] {
        let (status, _, text) = post(body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body:.300}: {text}");
        assert!(text.contains(says), "{body:.300}: {text}");
    }
    let long = "v".repeat(5000);
    let shape = |v: Value| v.to_string();
    for (body, says) in [
        (
            review("authentication.k8s.io/v1", "TokenReview"),
            "authentication.k8s.io/v1/TokenReview",
        ),
        (
            review("authorization.k8s.io/v1beta1", "SubjectAccessReview"),
            "v1beta1",
        ),
        (
            review(sar, "LocalSubjectAccessReview"),
            "LocalSubjectAccessReview",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview"})),
            "spec",
        ),
        (
            shape(json!({"kind": "SubjectAccessReview", "spec": spec})),
            "apiVersion",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview", "spec": {"user": 7}})),
            "invalid type",
        ),
        // Red team 45: a derived struct also takes its fields as an array, in order.
        (
            shape(json!([sar, "SubjectAccessReview",
                ["roster:acme:bob@acme.example", "bob-uid", {"roster.dev/membership": ["bob"]}]])),
            "an object",
        ),
        (
            shape(json!([sar, "SubjectAccessReview", spec])),
            "an object",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": ["roster:acme:bob@acme.example"]})),
            "an object",
        ),
        // What roster does not read is still checked for its shape.
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": {"user": "x", "groups": 7}})),
            "invalid type",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": {"user": "x", "resourceAttributes": ["x"]}})),
            "an object",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "metadata": 5, "spec": {"user": "x"}})),
            "an object",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": {"user": "x", "nonResourceAttributes": ["/healthz"]}})),
            "an object",
        ),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview",
                "spec": {"user": "x"}, "status": [false]})),
            "an object",
        ),
        // The caller's own strings come back cut, wherever serde names them.
        (review(&long, "SubjectAccessReview"), &long[..64]),
        (
            shape(json!({"apiVersion": sar, "kind": "SubjectAccessReview", "spec": long})),
            &long[..64],
        ),
    ] {
        let (status, _, text) = post(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["reason"], "Malformed", "{text}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(says)),
            "{body}: {text}"
        );
        assert!(text.len() < 512, "{text}");
    }
}

#[tokio::test]
async fn the_api_servers_endpoints_are_not_served_to_members() {
    let f = fixture(vec![bob()], 3);
    for path in ["/authenticate", "/authorize"] {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("request");
        let resp = router(f.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{path} on the members' listener"
        );
    }
}

#[tokio::test]
async fn logins_over_the_rate_limit_get_429_with_retry_after_and_cost_nothing() {
    // Two attempts a minute per member, generous per source.
    let f = fixture_with(vec![bob()], 0, Limits::new(1000, 2));
    let body = || {
        json!({"organization": NS, "email": "bob@acme.example", "password": "wrong"}).to_string()
    };
    for i in 0..2 {
        let (status, _, text) = call(&f, "POST", "/api/v1/login", "application/json", body()).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "attempt {i}: {text}");
    }
    let (status, headers, text) =
        call(&f, "POST", "/api/v1/login", "application/json", body()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["reason"], "RateLimited");
    let retry: u64 = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    // The page says the same, with the same header; another member is not held back.
    let (status, headers, page) = call(
        &f,
        "POST",
        "/login",
        "application/x-www-form-urlencoded",
        "organization=acme&email=bob%40acme.example&password=x&code=".into(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(headers.get(header::RETRY_AFTER).is_some());
    let other =
        json!({"organization": NS, "email": "carl@acme.example", "password": "wrong"}).to_string();
    let (status, _, _) = call(&f, "POST", "/api/v1/login", "application/json", other).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Property: whatever arrives — mangled JSON, random forms and queries, noise — every route
/// answers without a panic or a 500, with a well-formed body of its kind: JSON with `error` and
/// `reason` for the API's refusals, a TokenReview or SubjectAccessReview for the API server's
/// endpoints, an HTML page for the pages. `ROSTER_FUZZ_CASES` / `ROSTER_FUZZ_SEED` as for the
/// webhook's.
#[tokio::test]
async fn every_route_answers_every_body_with_a_well_formed_response() {
    use crate::fixtures::{Rng, fuzz_budget};
    let (cases, seed) = fuzz_budget(1_500);
    let mut rng = Rng::new(seed);
    let mut disabled = member("dave", None, &[]);
    disabled.spec.disabled = true;
    let f = fixture(vec![bob(), disabled], 3);
    let started = std::time::Instant::now();
    let word = |rng: &mut Rng| -> String {
        let pool = [
            "acme",
            "bob@acme.example",
            "dave@acme.example",
            "",
            "%00",
            "%FF%FE",
            "a%20b",
            "correct horse battery staple 42",
            "123456",
            "roster.v1.e30.x",
            "<script>",
            "&&&",
            "=",
            "x".repeat(300).leak(),
        ];
        pool[rng.below(pool.len())].to_string()
    };
    for case in 0..cases {
        let (method, path, ctype, body, kind) = match rng.below(8) {
            0 | 1 => {
                let mut v = json!({"organization": word(&mut rng), "email": word(&mut rng),
                    "password": word(&mut rng), "code": word(&mut rng)});
                crate::webhook::fuzz::mangle(&mut rng, &mut v, 0);
                let path = if rng.chance(70) {
                    "/api/v1/login"
                } else {
                    "/api/v1/ownership-transfer"
                };
                (
                    "POST",
                    path.to_string(),
                    "application/json",
                    v.to_string(),
                    "json",
                )
            }
            2 => {
                let token = Signer::new(&KEY).sign(&claims(
                    rng.below(5) as u64,
                    token::SESSION,
                    super::now() + 60,
                ));
                let mut v = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": if rng.chance(50) { token.expose().to_string() } else { word(&mut rng) },
                             "audiences": [AUD]}});
                crate::webhook::fuzz::mangle(&mut rng, &mut v, 0);
                (
                    "POST",
                    "/authenticate".into(),
                    "application/json",
                    v.to_string(),
                    "review",
                )
            }
            3 => {
                let mut v = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": {"user": if rng.chance(50) { "roster:acme:bob@acme.example".to_string() } else { word(&mut rng) },
                             "uid": "bob-uid", "groups": ["roster:acme"],
                             "extra": {"roster.dev/membership": [word(&mut rng)], "roster.dev/generation": [word(&mut rng)]}}});
                crate::webhook::fuzz::mangle(&mut rng, &mut v, 0);
                (
                    "POST",
                    "/authorize".into(),
                    "application/json",
                    v.to_string(),
                    "review",
                )
            }
            4 => {
                let form = format!(
                    "organization={}&email={}&password={}&code={}",
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng)
                );
                (
                    "POST",
                    "/login".into(),
                    "application/x-www-form-urlencoded",
                    form,
                    "html",
                )
            }
            5 => {
                let form = format!(
                    "org={}&member={}&token={}&password={}&confirm={}",
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng),
                    word(&mut rng)
                );
                (
                    "POST",
                    "/accept".into(),
                    "application/x-www-form-urlencoded",
                    form,
                    "html",
                )
            }
            6 => {
                let form = format!("ticket={}&code={}", word(&mut rng), word(&mut rng));
                (
                    "POST",
                    "/enrol".into(),
                    "application/x-www-form-urlencoded",
                    form,
                    "html",
                )
            }
            _ => {
                let enc = |w: String| -> String {
                    w.bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b"-._~%".contains(&b) {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect()
                };
                let q = format!(
                    "/accept?org={}&member={}&token={}",
                    enc(word(&mut rng)),
                    enc(word(&mut rng)),
                    enc(word(&mut rng))
                );
                ("GET", q, "text/plain", String::new(), "html")
            }
        };
        let body = if rng.chance(5) {
            String::from_utf8_lossy(
                &(0..rng.below(100))
                    .map(|_| rng.next() as u8)
                    .collect::<Vec<_>>(),
            )
            .into_owned()
        } else {
            body
        };
        let (status, headers, text) = call(&f, method, &path, ctype, body.clone()).await;
        let ctx =
            format!("case {case} (ROSTER_FUZZ_SEED={seed}) {method} {path}: {status} {text:.300}");
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
            "{ctx}"
        );
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match kind {
            "json" => {
                let v: Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {ctx}"));
                if status.is_success() {
                    assert!(v["token"].is_string(), "{ctx}");
                } else if status != StatusCode::PAYLOAD_TOO_LARGE {
                    assert!(v["error"].is_string() && v["reason"].is_string(), "{ctx}");
                }
            }
            "review" => {
                let v: Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {ctx}"));
                if status.is_success() {
                    assert!(v["status"].is_object(), "{ctx}");
                    if path == "/authenticate" && v["status"]["authenticated"] == true {
                        assert_eq!(
                            v["status"]["user"]["username"], "roster:acme:bob@acme.example",
                            "{ctx}"
                        );
                    }
                    if path == "/authorize" {
                        assert_eq!(v["status"]["allowed"], false, "roster never allows: {ctx}");
                    }
                } else {
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{ctx}");
                }
            }
            _ => {
                if status.is_client_error()
                    && status != StatusCode::UNPROCESSABLE_ENTITY
                    && status != StatusCode::UNSUPPORTED_MEDIA_TYPE
                    && status != StatusCode::BAD_REQUEST
                    || status.is_success()
                {
                    assert!(
                        content_type.starts_with("text/html"),
                        "{ctx} ({content_type})"
                    );
                    assert!(text.contains("</html>"), "{ctx}");
                }
            }
        }
    }
    eprintln!(
        "identity router property: {cases} requests (seed {seed}) in {:?}",
        started.elapsed()
    );
}

async fn whoami(f: &Fixture, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method("GET").uri("/api/v1/whoami");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = router(f.state.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `kubectl roster whoami`'s endpoint: a member's own standing, for a session token that is
/// valid now — not an enrolment ticket, not another roster's, not an old generation's, not a
/// disabled member's — and nothing for anyone else.
#[tokio::test]
async fn whoami_answers_a_valid_session_token_of_a_member_in_good_standing_only() {
    let f = fixture(vec![bob()], 3);
    let later = super::now() + 3600;
    let good = Signer::new(&KEY).sign(&claims(3, token::SESSION, later));
    let (status, v) = whoami(&f, Some(good.expose())).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["organization"].as_str(),
            v["email"].as_str(),
            v["membership"].as_str()
        ),
        (Some("acme"), Some("bob@acme.example"), Some("bob"))
    );
    assert!(v["tokenExpiresAt"].is_string(), "{v}");
    assert!(v.get("token").is_none() && !v.to_string().contains(good.expose()));

    let refused = [
        ("no token", None),
        (
            "an enrolment ticket",
            Some(
                Signer::new(&KEY)
                    .sign(&claims(3, token::ENROL, later))
                    .expose()
                    .to_string(),
            ),
        ),
        (
            "another roster's key",
            Some(
                Signer::new(&random::<32>())
                    .sign(&claims(3, token::SESSION, later))
                    .expose()
                    .to_string(),
            ),
        ),
        (
            "an old generation",
            Some(
                Signer::new(&KEY)
                    .sign(&claims(2, token::SESSION, later))
                    .expose()
                    .to_string(),
            ),
        ),
        (
            "an expired token",
            Some(
                Signer::new(&KEY)
                    .sign(&claims(3, token::SESSION, 1))
                    .expose()
                    .to_string(),
            ),
        ),
        ("garbage", Some("roster.v1.garbage".to_string())),
    ];
    for (what, token) in refused {
        let (status, v) = whoami(&f, token.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {v}");
        assert!(v.get("email").is_none(), "{what}: {v}");
    }
    let mut disabled = bob();
    disabled.spec.disabled = true;
    let f = fixture(vec![disabled], 3);
    let (status, v) = whoami(&f, Some(good.expose())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a disabled member: {v}");
}

/// The enrolment form sent back before the watch delivered the record acceptance wrote (its
/// generation is the ticket's): the cache is waited for, not the member told the page expired
/// (seen in CI on a real node). A ticket older than the record is refused at once, and one
/// whose record never comes is refused after the wait.
#[tokio::test]
async fn an_enrolment_waits_for_a_cache_behind_its_ticket() {
    let mut f = fixture(vec![bob()], 1);
    let later = super::now() + 600;
    let post = |ticket: crate::identity::Secret| {
        let state = f.state.clone();
        async move {
            let app = router(state);
            let req = Request::builder()
                .method("POST")
                .uri("/enrol")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "ticket={}&code=123456",
                    ticket.expose()
                )))
                .expect("request");
            let resp = app.oneshot(req).await.expect("response");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let expired = |page: &str| page.contains("This enrolment page has expired");
    // Older than the record: refused at once.
    let (status, page) = post(Signer::new(&KEY).sign(&claims(0, token::ENROL, later))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(expired(&page), "{page}");
    // Ahead of the cache, which never catches up: refused after the wait.
    let (status, page) = post(Signer::new(&KEY).sign(&claims(2, token::ENROL, later))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(expired(&page), "{page}");
    // Ahead of the cache, which catches up a moment later: the ticket holds.
    let ticket = Signer::new(&KEY).sign(&claims(2, token::ENROL, later));
    let answer = tokio::spawn(post(ticket));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    f.creds
        .apply_watcher_event(&watcher::Event::Apply(credential(
            "bob@acme.example",
            &Record {
                email: "bob@acme.example".into(),
                membership_uid: Some("bob-uid".into()),
                generation: 2,
                accepted_at: Some(1),
                ..Default::default()
            },
        )));
    let (_, page) = answer.await.expect("answer");
    assert!(!expired(&page), "{page}");
}

/// Red team 32: a member whose MFA grace period is over and who never enrolled is refused,
/// by TokenReview and by the authorization webhook alike. Login gives such a member no
/// session, but one issued before MFA was required of them (or during an exemption) outlived
/// the grace period. In the grace period, enrolled, exempt, or MFA no longer required: the
/// same token passes. bob joined on 2026-01-01; the grace period is 72 h.
#[tokio::test]
async fn a_member_past_the_mfa_grace_period_without_mfa_is_refused_a_token() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let required_since = |since: Timestamp, required: bool| {
        let mut o = org("alice@acme.example");
        o.spec.security.mfa.required = required;
        o.status = Some(crate::fixtures::mfa_required_since(since));
        o
    };
    let long_ago = crate::fixtures::ts("2026-01-01T00:00:00Z");
    let an_hour_ago = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(1))
        .expect("time");
    let mut exempt = bob();
    exempt.spec.mfa = Some(crate::api::MfaExemption {
        exempt: true,
        exempt_until: None,
        reason: Some("hardware key on order".into()),
    });
    let mut joined_an_hour_ago = bob();
    joined_an_hour_ago.metadata.creation_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(an_hour_ago),
    );
    let unix = |t: Timestamp| u64::try_from(t.as_second()).expect("unix");
    // bob's record as the case has it (None: the fixture's).
    let record = |enrolled: bool, first_joined: Timestamp| {
        Some(Record {
            email: "bob@acme.example".into(),
            membership_uid: Some("bob-uid".into()),
            generation: 3,
            totp_sealed: enrolled.then(|| "sealed".into()),
            first_joined: Some(unix(first_joined)),
            ..Default::default()
        })
    };
    // (case, organization, member, record, refused)
    let cases = [
        (
            "grace over, never enrolled",
            required_since(long_ago, true),
            bob(),
            None,
            true,
        ),
        (
            "in the grace period",
            required_since(an_hour_ago, true),
            bob(),
            None,
            false,
        ),
        (
            "enrolled",
            required_since(long_ago, true),
            bob(),
            record(true, long_ago),
            false,
        ),
        (
            "exempt",
            required_since(long_ago, true),
            exempt,
            None,
            false,
        ),
        (
            "MFA no longer required",
            required_since(long_ago, false),
            bob(),
            None,
            false,
        ),
        (
            "joined an hour ago",
            required_since(long_ago, true),
            joined_an_hour_ago.clone(),
            record(false, an_hour_ago),
            false,
        ),
        // Red teams 33 and 34: a member deleted and declared again by an Admin; the address
        // first joined long ago (its record says so).
        (
            "declared again an hour ago, first joined long ago",
            required_since(long_ago, true),
            joined_an_hour_ago,
            record(false, long_ago),
            true,
        ),
    ];
    let token = Signer::new(&KEY).sign(&claims(3, token::SESSION, super::now() + 3600));
    let enrol = Signer::new(&KEY).sign(&claims(3, token::ENROL, super::now() + 600));
    let ours = json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]});
    for (case, o, m, record, refused) in cases {
        let mut f = fixture_of(vec![m.clone()], 3, Limits::off(), vec![o]);
        if let Some(record) = record {
            f.creds
                .apply_watcher_event(&watcher::Event::Apply(credential(&m.spec.email, &record)));
        }
        let v = review(&f, token.expose()).await;
        let s = authorize(&f, json!(["roster:acme"]), ours.clone()).await;
        // Overdue or not, the member may enrol: that is the way back (red team 35: an overdue
        // member's enrolment page "expired", and only an exemption let them in again).
        assert!(
            super::flow::enrol_ticket_now(&f.state, enrol.expose(), super::now()).is_some(),
            "{case}: the enrolment ticket is refused"
        );
        if refused {
            assert_eq!(v["status"]["authenticated"], false, "{case}: {v}");
            assert_eq!(v["status"]["error"], "roster: MfaOverdue", "{case}: {v}");
            assert_eq!(s["status"]["denied"], true, "{case}: {s}");
            assert_eq!(s["status"]["reason"], "roster: MfaOverdue", "{case}: {s}");
        } else {
            assert_eq!(v["status"]["authenticated"], true, "{case}: {v}");
            assert_eq!(
                s["status"],
                json!({"allowed": false}),
                "{case}: RBAC decides: {s}"
            );
        }
    }
}

/// MFA is judged by the token's own organization: globex's overdue policy, with a namesake
/// Membership of the same e-mail in its namespace, leaves acme's bob his token; acme's own
/// overdue policy does not, whatever globex's says.
#[tokio::test]
async fn an_overdue_mfa_policy_reaches_only_its_own_organization_s_tokens() {
    let long_ago = crate::fixtures::ts("2026-01-01T00:00:00Z");
    let policy = |name: &str, required: bool| {
        let mut o = org("alice@acme.example");
        o.metadata.name = Some(name.into());
        o.metadata.namespace = Some(name.into());
        o.metadata.uid = Some(format!("{name}-uid"));
        o.spec.security.mfa.required = required;
        o.status = Some(crate::fixtures::mfa_required_since(long_ago));
        o
    };
    let mut namesake = bob();
    namesake.metadata.namespace = Some("globex".into());
    namesake.metadata.uid = Some("globex-bob-uid".into());
    let token = Signer::new(&KEY).sign(&claims(3, token::SESSION, super::now() + 3600));
    let ours = json!({"roster.dev/membership": ["bob"], "roster.dev/generation": ["3"]});
    // (acme requires MFA, globex requires MFA, acme's bob refused)
    for (acme, globex, refused) in [(false, true, false), (true, false, true)] {
        let f = fixture_of(
            vec![bob(), namesake.clone()],
            3,
            Limits::off(),
            vec![policy("acme", acme), policy("globex", globex)],
        );
        let v = review(&f, token.expose()).await;
        let s = authorize(&f, json!(["roster:acme"]), ours.clone()).await;
        let case = format!("acme requires MFA: {acme}, globex: {globex}");
        if refused {
            assert_eq!(v["status"]["error"], "roster: MfaOverdue", "{case}: {v}");
            assert_eq!(s["status"]["reason"], "roster: MfaOverdue", "{case}: {s}");
        } else {
            assert_eq!(v["status"]["authenticated"], true, "{case}: {v}");
            assert_eq!(s["status"], json!({"allowed": false}), "{case}: {s}");
        }
    }
}
