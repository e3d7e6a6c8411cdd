//! An outsider (no credentials) must not tell members from strangers through the identity
//! pages and login API: not by a page that names the member, not by a status only members
//! reach when the API server fails, not by answer times when the credential store is slow.
//! Each test was written by a red-team round and seen failing before its fix. Credential
//! writes go to a stand-in API server (a few lines of axum) where a test needs them to succeed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use serde_json::json;
use tower::ServiceExt;

use super::tests::{bob, cache, members_cache};
use super::{AppState, router};
use crate::fixtures::{NS, member, org};
use crate::identity::Secret;
use crate::identity::audit::SecurityLog;
use crate::identity::limit::Limits;
use crate::identity::password::Hasher;
use crate::identity::revocation::Revocations;
use crate::identity::seal;
use crate::identity::service::{Identity, Keys};
use crate::identity::store::{Record, Store};
use crate::identity::token::Signer;

const OWN_NS: &str = "roster-system";
const FLOOR: Duration = Duration::from_millis(250);

/// A stand-in API server that takes every credential write (PUT of a Secret), after `delay`.
pub(super) async fn fake_api_server(delay: Duration) -> String {
    let rv = Arc::new(AtomicU64::new(100));
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let rv = rv.clone();
        async move {
            tokio::time::sleep(delay).await;
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            v["metadata"]["resourceVersion"] = json!(rv.fetch_add(1, Ordering::SeqCst).to_string());
            axum::Json(v)
        }
    });
    serve(app).await
}

/// Serves a stand-in API server on a free local port; its URL.
async fn serve(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

/// bob is an accepted member with a password; `api` is where credential writes go.
pub(super) async fn state(api: &str, hasher: Hasher, limits: Limits) -> Arc<AppState> {
    let client =
        kube::Client::try_from(kube::Config::new(api.parse().expect("url"))).expect("client");
    let phc = hasher
        .hash(&Secret::new("the right password 42!"))
        .await
        .expect("hash");
    let m = bob();
    let record = Record {
        email: m.spec.email.clone(),
        membership_uid: m.metadata.uid.clone(),
        password_hash: Some(phc),
        accepted_at: Some(1),
        ..Default::default()
    };
    let cred = KubeSecret {
        metadata: kube::api::ObjectMeta {
            name: Some(Store::secret_name(NS, &m.spec.email)),
            namespace: Some(OWN_NS.into()),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "record".to_string(),
            ByteString(serde_json::to_vec(&record).expect("json")),
        )])),
        ..Default::default()
    };
    let (seal_key, _) = seal::Key::generate();
    let identity = Identity::new(
        client,
        OWN_NS,
        Keys {
            seal: seal_key,
            signer: Signer::new(&[7; 32]),
        },
        hasher,
        "https://id.acme.example".into(),
        None,
        SecurityLog::print_only(),
    )
    .with_credential_cache(cache(vec![crate::cache::Credential::of(&cred)]));
    // carl has a Membership but no credential record yet (e.g. invitation not yet sent).
    let mut carl = member("carl", None, &[]);
    carl.metadata.uid = Some("carl-uid".into());
    Arc::new(AppState {
        identity: Arc::new(identity),
        orgs: cache(vec![org("alice@acme.example")]),
        memberships: members_cache(vec![m, carl]),
        revocations: Revocations::default(),
        limits,
        audiences: vec![],
        cluster: None,
        emails: None,
    })
}

async fn send(
    s: &Arc<AppState>,
    method: &str,
    path: &str,
    ctype: &str,
    body: String,
) -> (StatusCode, String, Duration) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(body))
        .expect("request");
    let started = Instant::now();
    let resp = router(s.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        started.elapsed(),
    )
}

fn login_body(email: &str, password: &str) -> String {
    json!({"organization": NS, "email": email, "password": password}).to_string()
}

/// POST /accept with two different passwords answers, for any Membership name that
/// exists (no token needed), a 400 page naming the member's e-mail; for a name that does not
/// exist, 404. An outsider enumerates Membership names and harvests their addresses.
#[tokio::test]
async fn accept_with_differing_passwords_reveals_nothing_without_a_valid_token() {
    let s = state(
        "https://127.0.0.1:9",
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        Limits::off().with_failure_floor(FLOOR),
    )
    .await;
    let form =
        |member: &str| format!("org=acme&member={member}&token=not-a-token&password=a&confirm=b");
    let (known, page_known, known_took) = send(
        &s,
        "POST",
        "/accept",
        "application/x-www-form-urlencoded",
        form("bob"),
    )
    .await;
    let (unknown, _, unknown_took) = send(
        &s,
        "POST",
        "/accept",
        "application/x-www-form-urlencoded",
        form("nobody"),
    )
    .await;
    assert!(
        !page_known.contains("bob@acme.example"),
        "a forged accept form shows the member's e-mail ({known}): {page_known:.400}"
    );
    assert_eq!(known, unknown, "existing vs made-up Membership name");
    // Refused links answer at the failure floor, whatever the refusal cost.
    assert!(
        known_took >= FLOOR && unknown_took >= FLOOR,
        "{known_took:?} {unknown_took:?}"
    );
}

/// With the API server unreachable (or refusing roster's write: throttled,
/// overloaded, a 5xx), a wrong password for a real member answers 503 at once, an unknown
/// address 401 after the floor. Same for GET /accept of a Membership whose record is not cached.
#[tokio::test]
async fn a_failing_api_server_does_not_tell_members_from_strangers() {
    let s = state(
        "https://127.0.0.1:9",
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        Limits::off().with_failure_floor(FLOOR),
    )
    .await;
    let (a, body_a, ta) = send(
        &s,
        "POST",
        "/api/v1/login",
        "application/json",
        login_body("bob@acme.example", "wrong guess"),
    )
    .await;
    let (b, body_b, _) = send(
        &s,
        "POST",
        "/api/v1/login",
        "application/json",
        login_body("nobody@acme.example", "wrong guess"),
    )
    .await;
    let (c, _, c_took) = send(
        &s,
        "GET",
        "/accept?org=acme&member=carl&token=x",
        "text/plain",
        String::new(),
    )
    .await;
    let (d, _, d_took) = send(
        &s,
        "GET",
        "/accept?org=acme&member=zed&token=x",
        "text/plain",
        String::new(),
    )
    .await;
    assert_eq!((a, body_a), (b, body_b), "login: member vs stranger");
    assert!(
        ta >= FLOOR,
        "the member's answer came before the floor: {ta:?}"
    );
    assert_eq!(c, d, "accept: existing vs made-up Membership name");
    assert!(c_took >= FLOOR && d_took >= FLOOR, "{c_took:?} {d_took:?}");
}

/// A slow credential store (here: every write takes 300 ms, above the 250 ms floor): a
/// member's wrong password answers late, and from then on so does everyone's failure — the
/// floor rises above the slowest failure seen lately (`limit::FailureFloor`), so an unknown
/// address is not the one fast answer. Lower bounds only: nothing here can fail by being slow.
#[tokio::test]
async fn a_slow_credential_store_slows_every_failure_alike() {
    let slow = fake_api_server(Duration::from_millis(300)).await;
    let s = state(
        &slow,
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        Limits::off().with_failure_floor(FLOOR),
    )
    .await;
    let (a, _, member) = send(
        &s,
        "POST",
        "/api/v1/login",
        "application/json",
        login_body("bob@acme.example", "wrong guess"),
    )
    .await;
    assert_eq!(a, StatusCode::UNAUTHORIZED);
    assert!(member >= Duration::from_millis(300), "{member:?}");
    let (b, _, stranger) = send(
        &s,
        "POST",
        "/api/v1/login",
        "application/json",
        login_body("nobody@acme.example", "wrong guess"),
    )
    .await;
    assert_eq!(b, StatusCode::UNAUTHORIZED);
    // The member's failure took at least the 300 ms write; the floor is now a quarter above
    // that (less a few milliseconds of decay): the unknown address waits as long.
    assert!(
        stranger >= Duration::from_millis(350),
        "after a {member:?} failure for a member, an unknown address answered in {stranger:?}"
    );
}

/// A slow credential read on the accept page (carl has a Membership and no cached record, read
/// from the API server here) raises the floor for every refused link, so a made-up name waits
/// as long. Lower bounds only. (Red team 19b: zed answered at the floor and carl after the
/// read, and an outsider told Membership names apart.)
#[tokio::test]
async fn a_slow_read_on_the_accept_page_slows_every_refused_link_alike() {
    let slow = fake_api_server(Duration::from_millis(400)).await;
    let s = state(
        &slow,
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        Limits::off().with_failure_floor(FLOOR),
    )
    .await;
    let page = |member: &str| format!("/accept?org=acme&member={member}&token=x");
    let (c, _, carl) = send(&s, "GET", &page("carl"), "text/plain", String::new()).await;
    assert!(carl >= Duration::from_millis(400), "{carl:?}");
    let (d, _, zed) = send(&s, "GET", &page("zed"), "text/plain", String::new()).await;
    assert_eq!(c, d, "a real Membership name and a made-up one");
    assert!(
        zed >= Duration::from_millis(450),
        "after a {carl:?} refusal for a real name, a made-up one answered in {zed:?}"
    );
}

/// A stand-in API server whose Organization is at version `current`: a PATCH of it carrying
/// another resourceVersion gets 409 (as the API server answers a precondition that fails),
/// one carrying none or the current one is taken; every other write is taken too.
async fn api_with_organization_at(current: &'static str) -> String {
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, body: axum::body::Bytes| async move {
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let sent = v["metadata"]["resourceVersion"].as_str().map(str::to_string);
            if uri.path().contains("/organizations/") && sent.is_some_and(|rv| rv != current) {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "Conflict", "code": 409,
                    "message": "the object has been modified; please apply your changes to the latest version and try again"});
                return (StatusCode::CONFLICT, axum::Json(status));
            }
            v["metadata"]["resourceVersion"] = json!("2");
            (StatusCode::OK, axum::Json(v))
        },
    );
    serve(app).await
}

/// Ownership moves only from the owner the Organization names now: roster checks the owner on
/// its cache and writes as an identity the webhook trusts, so the write carries the version
/// it checked. (Red team 19b: bob, owner until a GitOps transfer roster's watch had not yet
/// delivered, moved ownership to carl with his password; the unconditioned patch went
/// through.) The twin: with the cache current, the same transfer goes through.
#[tokio::test]
async fn a_former_owner_cannot_move_ownership_while_the_cache_still_names_them() {
    for (api_version, want) in [("org-v2", StatusCode::CONFLICT), ("org-v1", StatusCode::OK)] {
        let api = api_with_organization_at(api_version).await;
        let s = state(
            &api,
            Hasher::new(1024, 1, 1, 2).expect("hasher"),
            Limits::off(),
        )
        .await;
        let mut s = Arc::into_inner(s).expect("one handle");
        // The cache's copy (version org-v1) still names bob.
        let mut stale = org("bob@acme.example");
        stale.metadata.resource_version = Some("org-v1".into());
        s.orgs = cache(vec![stale]);
        let s = Arc::new(s);
        let body = json!({"organization": NS, "email": "bob@acme.example",
            "password": "the right password 42!", "newOwner": "carl@acme.example"});
        let (status, text, _) = send(
            &s,
            "POST",
            "/api/v1/ownership-transfer",
            "application/json",
            body.to_string(),
        )
        .await;
        assert_eq!(status, want, "API server at {api_version}: {text}");
        if want == StatusCode::CONFLICT {
            assert!(text.contains("OrganizationChanged"), "{text}");
        }
    }
}
