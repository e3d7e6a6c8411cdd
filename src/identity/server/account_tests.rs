//! The account page after a login: the member's standing, and a ready kubeconfig when roster
//! knows the API server members reach — no credential in it, so nothing else changes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::outsider_tests::{fake_api_server, state};
use super::{AppState, router};
use crate::identity::kubeconfig::ClusterAccess;
use crate::identity::limit::Limits;
use crate::identity::password::Hasher;

async fn login_page(s: &Arc<AppState>, password: &str) -> (StatusCode, String) {
    let form = format!(
        "organization=acme&email=bob%40acme.example&password={}&code=",
        password.replace(' ', "+").replace('!', "%21")
    );
    let req = Request::builder()
        .method("POST")
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .expect("request");
    let resp = router(s.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn with_cluster(cluster: Option<ClusterAccess>) -> Arc<AppState> {
    let api = fake_api_server(Duration::ZERO).await;
    let s = state(
        &api,
        Hasher::new(1024, 1, 1, 2).expect("hasher"),
        Limits::off(),
    )
    .await;
    let mut s = Arc::try_unwrap(s).unwrap_or_else(|_| panic!("a fresh state"));
    s.cluster = cluster;
    Arc::new(s)
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
}

#[tokio::test]
async fn the_account_page_offers_a_kubeconfig_for_the_member_and_organization() {
    let s = with_cluster(Some(ClusterAccess {
        server: "https://k8s.acme.example:6443".into(),
        ca_pem: Some("-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n".into()),
        identity_ca_pem: None,
    }))
    .await;
    let (status, page) = login_page(&s, "the right password 42!").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Signed in as"), "{page}");
    let href = page
        .split("href=\"data:application/yaml;base64,")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a download link");
    assert!(page.contains("download=\"acme.kubeconfig\""), "{page}");
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(unescape(href))
            .expect("base64"),
    )
    .expect("utf-8");
    let v: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    assert_eq!(
        v["clusters"][0]["cluster"]["server"],
        "https://k8s.acme.example:6443"
    );
    let env = v["users"][0]["user"]["exec"]["env"].to_string();
    assert!(
        env.contains("bob@acme.example")
            && env.contains("\"acme\"")
            && env.contains("https://id.acme.example"),
        "{env}"
    );
    assert!(
        !text.contains("the right password"),
        "no secret in a kubeconfig"
    );

    // A wrong password shows no account and no kubeconfig.
    let (status, page) = login_page(&s, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!page.contains("kubeconfig"), "{page}");
}

#[tokio::test]
async fn without_cluster_settings_the_page_shows_the_command_line() {
    let s = with_cluster(None).await;
    let (status, page) = login_page(&s, "the right password 42!").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("kubectl roster login --organization acme --email bob@acme.example"),
        "{page}"
    );
    assert!(!page.contains("data:application/yaml"));
}
