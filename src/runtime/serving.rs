//! One serving certificate for every replica, kept in a Secret of roster's namespace: a CA
//! (ten years) and a leaf for the Services' names, renewed before it expires.
//!
//! - Created once: every replica tries to *create* the Secret; the first wins, the others read
//!   the winner's (409). So the webhook configuration's caBundle is the same CA, whoever
//!   writes it — never two replicas with different bundles.
//! - Renewed by any replica that sees the leaf in its last third, with compare-and-swap on the
//!   Secret's resourceVersion (one renewal wins); same CA, so clients notice nothing.
//! - Every replica re-reads the Secret periodically and serves the new leaf from its next
//!   handshake; open connections keep theirs. No request is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::{Error, Result};
use crate::api::contract::{MANAGED_BY, MANAGER, PREFIX};
use crate::tls::{Authority, Certificates, Serving};

/// Annotations on the Secret: when its leaf expires (unix seconds) and for which names.
fn not_after_key() -> String {
    format!("{PREFIX}not-after")
}
fn names_key() -> String {
    format!("{PREFIX}names")
}

/// The shared certificate: what the listeners serve, and the CA clients trust — a watch,
/// because the CA changes when someone replaces it in the Secret (a rotation), and then the
/// webhook configuration's caBundle must follow.
pub struct Shared {
    pub serving: Arc<Serving>,
    pub ca_pem: tokio::sync::watch::Receiver<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a leaf issued for `lifetime` that expires at `not_after` should be renewed now:
/// in its last third, or when it does not name everything asked for.
pub fn due(not_after: u64, lifetime: Duration, now: u64, has_names: bool) -> bool {
    !has_names || now + lifetime.as_secs() / 3 >= not_after
}

#[derive(Debug)]
struct Stored {
    authority: Authority,
    /// None when the Secret holds only a CA (made with `roster certificate --keep-ca-key`, so
    /// that the API server trusts it before roster runs) or a leaf that does not chain to it.
    leaf: Option<Certificates>,
    not_after: u64,
    resource_version: Option<String>,
}

/// The Secret's CA (required) and leaf (if it is one the CA signed, for its first name).
fn parse(s: &Secret) -> Result<Stored> {
    let refuse = |why: &str| {
        Error::ServingCertificate(format!(
            "Secret {} does not hold a CA roster can issue from ({why}); delete it to have one made, or create it from `roster certificate --keep-ca-key` (ca.crt, ca.key)",
            s.metadata.name.as_deref().unwrap_or_default()
        ))
    };
    let empty = Default::default();
    let data = s.data.as_ref().unwrap_or(&empty);
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or_else(|| refuse(&format!("it has no {k}")))
    };
    let authority = Authority::from_pem(&text("ca.crt")?, &text("ca.key")?)
        .map_err(|e| refuse(&e.to_string()))?;
    let annotations = s.metadata.annotations.clone().unwrap_or_default();
    let names: Vec<String> = annotations
        .get(&names_key())
        .map(|n| {
            n.split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let leaf = match (text("tls.crt"), text("tls.key"), names.first()) {
        (Ok(cert), Ok(key), Some(name)) => Certificates::from_pem(&cert, &key, &authority.cert_pem)
            .ok()
            .filter(|leaf| leaf.verify(name).is_ok()),
        _ => None,
    };
    Ok(Stored {
        authority,
        leaf,
        not_after: annotations
            .get(&not_after_key())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        resource_version: s.metadata.resource_version.clone(),
    })
}

fn secret(
    name: &str,
    authority: &Authority,
    leaf: &Certificates,
    names: &[String],
    lifetime: Duration,
) -> Secret {
    let (cert, key) = leaf.leaf_pem();
    let b = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(MANAGED_BY.into(), MANAGER.into())])),
            annotations: Some(BTreeMap::from([
                (
                    not_after_key(),
                    (unix_now() + lifetime.as_secs()).to_string(),
                ),
                (names_key(), names.join(",")),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("ca.crt".into(), b(&authority.cert_pem)),
            ("ca.key".into(), b(authority.key_pem())),
            ("tls.crt".into(), b(&cert)),
            ("tls.key".into(), b(&key)),
        ])),
        ..Default::default()
    }
}

/// Loads (or creates) the shared certificate for `names`, and keeps it current until `stop`.
pub async fn start(
    client: Client,
    namespace: &str,
    name: &str,
    names: Vec<String>,
    lifetime: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Shared> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let (stored, leaf) = current(&api, name, &names, lifetime, None).await?;
    let (ca_tx, ca_rx) = tokio::sync::watch::channel(stored.authority.cert_pem.clone());
    let shared = Shared {
        serving: Arc::new(Serving::new(&leaf)?),
        ca_pem: ca_rx,
    };
    let serving = shared.serving.clone();
    // The CA in use: a Secret deleted meanwhile is made again from it (a new CA would be one
    // that neither the caBundle nor the API server's kubeconfigs trust).
    let mut authority = stored.authority;
    let name = name.to_string();
    let mut seen = stored.resource_version;
    // Checked a few times per lifetime's last third, at most every five minutes.
    let every = (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(300));
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
            match current(&api, &name, &names, lifetime, Some(&authority)).await {
                Ok((s, leaf)) if s.resource_version != seen => {
                    if let Err(e) = serving.set(&leaf) {
                        tracing::warn!(reason = crate::Reason::reason(&e), error = %e, "cannot serve the renewed certificate");
                        continue;
                    }
                    tracing::info!(secret = %name, not_after = s.not_after, "serving the renewed certificate");
                    seen = s.resource_version;
                    if s.authority.cert_pem != authority.cert_pem {
                        tracing::warn!(secret = %name, "the CA in the Secret was replaced: serving from it, and the webhook's caBundle follows");
                        let _ = ca_tx.send(s.authority.cert_pem.clone());
                    }
                    authority = s.authority;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "cannot check the serving certificate")
                }
            }
        }
    });
    Ok(shared)
}

/// The Secret's certificate (and its leaf), created or renewed first when needed; a missing
/// Secret is made from `known` (the CA in use), or from a new CA at first start.
async fn current(
    api: &Api<Secret>,
    name: &str,
    names: &[String],
    lifetime: Duration,
    known: Option<&Authority>,
) -> Result<(Stored, Certificates)> {
    let api_err = |e: kube::Error| Error::ServingCertificate(e.to_string());
    for _ in 0..5 {
        let existing = api.get_opt(name).await.map_err(api_err)?;
        let Some(existing) = existing else {
            let authority = match known {
                Some(a) => Authority::from_pem(&a.cert_pem, a.key_pem())?,
                None => Authority::generate()?,
            };
            let leaf = authority.issue(names, lifetime)?;
            match api
                .create(
                    &PostParams::default(),
                    &secret(name, &authority, &leaf, names, lifetime),
                )
                .await
            {
                // Read back: the stored copy (with its resourceVersion) is the one to serve.
                Ok(_) | Err(kube::Error::Api(_)) => continue,
                Err(e) => return Err(api_err(e)),
            }
        };
        let stored = parse(&existing)?;
        // The leaf itself must name everything asked for (not the annotation's word for it).
        let covers = |leaf: &Certificates| names.iter().all(|n| leaf.verify(n).is_ok());
        if let Some(leaf) = &stored.leaf
            && !due(stored.not_after, lifetime, unix_now(), covers(leaf))
        {
            let leaf = leaf.clone();
            return Ok((stored, leaf));
        }
        let leaf = stored.authority.issue(names, lifetime)?;
        if let Some(first) = names.first() {
            // The CA's certificate and key must belong together, or every client would refuse.
            leaf.verify(first).map_err(|e| {
                Error::ServingCertificate(format!(
                    "Secret {name}: a certificate issued with ca.key does not chain to ca.crt ({e})"
                ))
            })?;
        }
        let mut renewed = secret(name, &stored.authority, &leaf, names, lifetime);
        renewed.metadata.resource_version = existing.metadata.resource_version.clone();
        // A Secret's type is immutable: one made by hand (Opaque, from ca.crt and ca.key) stays
        // Opaque; its labels and annotations are kept too.
        renewed.type_ = existing.type_.clone();
        let mut labels = existing.metadata.labels.clone().unwrap_or_default();
        labels.extend(renewed.metadata.labels.take().unwrap_or_default());
        renewed.metadata.labels = Some(labels);
        let mut annotations = existing.metadata.annotations.clone().unwrap_or_default();
        annotations.extend(renewed.metadata.annotations.take().unwrap_or_default());
        renewed.metadata.annotations = Some(annotations);
        match api.replace(name, &PostParams::default(), &renewed).await {
            Ok(_) => tracing::info!(secret = %name, "renewed the serving certificate"),
            // Another replica renewed first: read theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(api_err(e)),
        }
    }
    Err(Error::ServingCertificate(format!(
        "Secret {name} keeps changing under roster; try again"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_of(entries: &[(&str, &str)], names: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("roster-serving".into()),
                annotations: names.map(|n| BTreeMap::from([(names_key(), n.to_string())])),
                ..Default::default()
            },
            data: Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_made_by_hand_with_a_ca_only_is_issued_from() {
        let ca = Authority::generate().expect("ca");
        let only_ca = secret_of(&[("ca.crt", &ca.cert_pem), ("ca.key", ca.key_pem())], None);
        let stored = parse(&only_ca).expect("a CA is enough");
        assert!(stored.leaf.is_none(), "no leaf yet: roster issues one");
        assert_eq!(stored.not_after, 0, "and it is due at once");

        let no_key = secret_of(&[("ca.crt", &ca.cert_pem)], None);
        let err = parse(&no_key).expect_err("no key").to_string();
        assert!(
            err.contains("ca.key") && err.contains("roster certificate --keep-ca-key"),
            "{err}"
        );

        // A leaf from another CA, or for other names, is not served: it is issued again.
        let name = "roster-webhook.roster-system.svc".to_string();
        let other = Authority::generate().expect("other");
        let foreign = other
            .issue(std::slice::from_ref(&name), Duration::from_secs(3600))
            .expect("leaf");
        let (cert, key) = foreign.leaf_pem();
        let mixed = secret_of(
            &[
                ("ca.crt", &ca.cert_pem),
                ("ca.key", ca.key_pem()),
                ("tls.crt", &cert),
                ("tls.key", &key),
            ],
            Some(&name),
        );
        assert!(parse(&mixed).expect("parses").leaf.is_none());
        let own = ca
            .issue(std::slice::from_ref(&name), Duration::from_secs(3600))
            .expect("leaf");
        let (cert, key) = own.leaf_pem();
        let good = secret_of(
            &[
                ("ca.crt", &ca.cert_pem),
                ("ca.key", ca.key_pem()),
                ("tls.crt", &cert),
                ("tls.key", &key),
            ],
            Some(&name),
        );
        assert!(parse(&good).expect("parses").leaf.is_some());
    }

    #[test]
    fn renewal_is_due_in_the_last_third_or_for_new_names() {
        let life = Duration::from_secs(90 * 24 * 3600);
        let now = 1_000_000_000;
        assert!(!due(now + 80 * 24 * 3600, life, now, true));
        assert!(due(now + 29 * 24 * 3600, life, now, true));
        assert!(due(now - 1, life, now, true), "expired");
        assert!(
            due(now + 80 * 24 * 3600, life, now, false),
            "a name is missing"
        );
    }

    /// A Secret API in memory: GET answers the stored object (404 when none), any write stores
    /// it with the next resourceVersion. Returns the client and the stored object.
    fn secrets_api() -> (Client, Arc<std::sync::Mutex<Option<serde_json::Value>>>) {
        use std::sync::Mutex;
        let stored: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
        let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let st = stored.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (st, version) = (st.clone(), version.clone());
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let (code, answer) = match parts.method {
                    http::Method::GET => match st.lock().expect("lock").clone() {
                        Some(v) => (200, v),
                        None => (
                            404,
                            serde_json::json!({"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404,"metadata":{}}),
                        ),
                    },
                    _ => {
                        let mut v: serde_json::Value =
                            serde_json::from_slice(&bytes).expect("json");
                        let n = version.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        v["metadata"]["resourceVersion"] = serde_json::json!(n.to_string());
                        *st.lock().expect("lock") = Some(v.clone());
                        (200, v)
                    }
                };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(answer.to_string().into_bytes()))
                        .expect("response"),
                )
            }
        });
        (Client::new(svc, "roster-system"), stored)
    }

    /// The third red-team round: a leaf the CA signed that lacks one of the names asked for was
    /// kept (the annotation was believed) and never renewed for it. Seen failing first.
    #[tokio::test]
    async fn a_stored_leaf_is_served_only_if_it_names_everything_asked_for() {
        let ca = Authority::generate().expect("ca");
        let a = "roster-webhook.roster-system.svc".to_string();
        let b = "roster-authn.roster-system.svc".to_string();
        let leaf = ca
            .issue(std::slice::from_ref(&a), Duration::from_secs(3600))
            .expect("leaf");
        let (cert, key) = leaf.leaf_pem();
        let mut secret = secret_of(
            &[
                ("ca.crt", &ca.cert_pem),
                ("ca.key", ca.key_pem()),
                ("tls.crt", &cert),
                ("tls.key", &key),
            ],
            Some(&format!("{a},{b}")),
        );
        secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(not_after_key(), (unix_now() + 3000).to_string());
        secret.metadata.resource_version = Some("1".into());
        let (client, stored) = secrets_api();
        *stored.lock().expect("lock") = Some(serde_json::to_value(&secret).expect("json"));
        let api: Api<Secret> = Api::namespaced(client, "roster-system");
        let names = vec![a.clone(), b.clone()];
        let (_, served) = current(
            &api,
            "roster-serving",
            &names,
            Duration::from_secs(3600),
            None,
        )
        .await
        .expect("current");
        for n in &names {
            assert!(served.verify(n).is_ok(), "the served leaf names {n}");
        }
    }

    /// The third red-team round: the renewal loop re-created a deleted Secret with a *new* CA
    /// and served its leaf, which neither the caBundle nor the API server's kubeconfigs trust
    /// (every admission call failed). Seen failing first; the CA in use is kept now.
    #[tokio::test]
    async fn a_deleted_serving_secret_is_made_again_from_the_ca_in_use() {
        let (client, stored) = secrets_api();
        let name = "localhost".to_string();
        let shared = start(
            client,
            "roster-system",
            "roster-serving",
            vec![name.clone()],
            Duration::from_secs(10),
            std::future::pending(),
        )
        .await
        .expect("start");
        // What the webhook configuration's caBundle now holds (register_ca_bundle at start).
        let ca_bundle = shared.ca_pem.borrow().clone();
        // Someone deletes the Secret (roster's own advice for an unusable one).
        *stored.lock().expect("lock") = None;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // A client trusting the caBundle connects to the listener.
        let listener = crate::tls::listen("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("addr");
        let config = crate::tls::server_config(shared.serving.clone(), None).expect("config");
        tokio::spawn(crate::tls::serve(
            listener,
            config,
            axum::Router::new(),
            std::future::pending(),
        ));
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let handshake = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").expect("n"),
                tcp,
            )
            .await;
        assert!(
            handshake.is_ok(),
            "after the Secret was re-created, the API server (trusting the caBundle written at start) is refused: {:?}",
            handshake.err()
        );
    }

    /// A CA replaced in the Secret by hand (a rotation) is served from, and announced, so that
    /// the webhook's caBundle follows.
    #[tokio::test]
    async fn a_replaced_ca_is_served_and_announced() {
        let (client, stored) = secrets_api();
        let name = "localhost".to_string();
        let mut shared = start(
            client,
            "roster-system",
            "roster-serving",
            vec![name.clone()],
            Duration::from_secs(10),
            std::future::pending(),
        )
        .await
        .expect("start");
        let first = shared.ca_pem.borrow_and_update().clone();
        let rotated = Authority::generate().expect("ca");
        let mut secret = secret_of(
            &[("ca.crt", &rotated.cert_pem), ("ca.key", rotated.key_pem())],
            None,
        );
        secret.metadata.resource_version = Some("100".into());
        *stored.lock().expect("lock") = Some(serde_json::to_value(&secret).expect("json"));
        tokio::time::timeout(Duration::from_secs(5), shared.ca_pem.changed())
            .await
            .expect("announced within a check")
            .expect("changed");
        let now = shared.ca_pem.borrow().clone();
        assert_ne!(now, first);
        assert_eq!(now, rotated.cert_pem);
    }
}
