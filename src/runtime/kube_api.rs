//! What the runtime asks the API server once, at start: a client (with roster's User-Agent, by
//! which audit logs tell roster's requests apart), whether the CRDs are installed, who roster
//! runs as, and the audience of the API server's own requests.

use kube::Client;

use super::{Error, Result};
use crate::api::{GROUP, VERSION};

/// A client whose User-Agent names roster and this replica (`roster/<version> (<instance>)`):
/// the API server's audit log tells the replicas' writes apart by it.
pub async fn client(instance: &str) -> Result<Client> {
    let mut config = kube::Config::infer().await.map_err(Error::Kubeconfig)?;
    let agent = format!("roster/{} ({instance})", env!("CARGO_PKG_VERSION"));
    let agent = http::HeaderValue::from_str(&agent).unwrap_or(http::HeaderValue::from_static(
        concat!("roster/", env!("CARGO_PKG_VERSION")),
    ));
    config.headers.push((http::header::USER_AGENT, agent));
    let client = Client::try_from(config).map_err(Error::Client)?;
    client.apiserver_version().await.map_err(Error::ApiServer)?;
    Ok(client)
}

/// Without its CRDs roster would watch nothing and (as a webhook) deny everything "not ready":
/// say so at once instead.
pub async fn crds_installed(client: &Client) -> Result<()> {
    let gv = format!("{GROUP}/{VERSION}");
    let resources = client
        .list_api_group_resources(&gv)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => Error::CrdsMissing(format!(
                "the API server does not serve {gv}: roster's CRDs are not installed"
            )),
            e => Error::ApiServer(e),
        })?;
    for kind in ["organizations", "projects", "memberships"] {
        if !resources.resources.iter().any(|r| r.name == kind) {
            return Err(Error::CrdsMissing(format!(
                "{kind}.{GROUP} is not installed"
            )));
        }
    }
    Ok(())
}

/// The user name roster runs as.
pub async fn own_username(client: &Client) -> Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = api
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await
        .map_err(|e| Error::WhoAmI(e.to_string()))?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::WhoAmI("the answer names no user".into()))
}

/// The API server's service-account issuer, as it publishes it: the audience its own requests
/// carry by default (--api-audiences defaults to the issuer).
pub async fn api_server_issuer(client: &Client) -> Result<String> {
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| Error::Audience(e.to_string()))?;
    let doc: serde_json::Value = client
        .request(req)
        .await
        .map_err(|e| Error::Audience(e.to_string()))?;
    doc.get("issuer")
        .and_then(|i| i.as_str())
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::Audience("the API server publishes no issuer".into()))
}
