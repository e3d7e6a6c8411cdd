//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles; every
//! replica serves the webhook and identity from its own caches.
//!
//! Hand-written rather than taken from a crate for one property: leadership here is a *local
//! deadline* — the moment the last successful renewal started, plus the lease duration, minus a
//! margin for clock skew. A replica that cannot renew (the API server unreachable, a partition)
//! stops acting as leader when its deadline passes, by its own clock, even though nobody told
//! it; by then the lease it held has expired for everyone else too. (kube-lease-manager reports
//! a change of holder only after it has talked to the API server again.)
//!
//! Every acquisition and renewal is a compare-and-swap (`replace` with the resourceVersion
//! read): two replicas can never both succeed at one step. Whether another holder's lease has
//! expired is judged, as client-go does, by this replica's monotonic clock since it last saw
//! the lease change — never by comparing the holder's wall-clock renewTime with ours, so clock
//! skew between nodes cannot make two leaders.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::api::contract::FIELD_MANAGER;

/// How long a lease lasts without renewal.
pub const DURATION: Duration = Duration::from_secs(10);
/// How often the holder renews, and a follower looks.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Subtracted from the leader's local deadline: a margin for a slow request and clock rates.
const SKEW: Duration = Duration::from_secs(2);

/// Whether this replica leads now. Cheap to clone and to ask.
#[derive(Clone)]
pub struct Leadership {
    until: Arc<Mutex<Option<Instant>>>,
    /// Flips to true each time leadership is gained (and false when it is lost).
    changes: watch::Receiver<bool>,
}

impl Leadership {
    /// A replica that always leads (one process, no election).
    pub fn always() -> Leadership {
        let (_tx, rx) = watch::channel(true);
        Leadership {
            until: Arc::new(Mutex::new(None)),
            changes: rx,
        }
    }

    fn elected() -> (Leadership, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (
            Leadership {
                until: Arc::new(Mutex::new(Some(Instant::now()))),
                changes: rx,
            },
            tx,
        )
    }

    pub fn is_leader(&self) -> bool {
        match self.until.lock() {
            Ok(until) => until.is_none_or(|u| u > Instant::now()) && *self.changes.borrow(),
            Err(_) => false,
        }
    }

    /// Resolves when this replica is not (or no longer) the leader, by its own clock at the
    /// latest: in-flight work is cut off there.
    pub async fn lost(&self) {
        loop {
            if !self.is_leader() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The moments this replica becomes leader (to reconcile everything then).
    pub fn gained(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.changes.clone(), |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                if *rx.borrow_and_update() {
                    return Some(((), rx));
                }
            }
        })
    }
}

#[cfg(test)]
impl Leadership {
    /// A replica that led and whose local deadline has just passed (the state of a leader that
    /// wakes from a freeze, or whose renewals failed, mid-reconcile).
    pub fn led_and_lost() -> Leadership {
        let (l, tx) = Leadership::elected();
        if let Ok(mut u) = l.until.lock() {
            *u = Some(Instant::now() + Duration::from_secs(60));
        }
        let _ = tx.send(true);
        assert!(l.is_leader());
        if let Ok(mut u) = l.until.lock() {
            *u = Some(Instant::now());
        }
        std::mem::forget(tx);
        l
    }
}

/// Why a write of the reconciler was not sent.
#[derive(Debug, thiserror::Error)]
#[error("not the leader: this replica sends no write (another one holds the lease)")]
pub struct NotLeader;

/// The reconciler's client: reads pass; a write leaves the process only while this replica
/// leads by its own clock, checked at the moment it is sent. `select!` on `lost()` stops a
/// reconcile between awaits; this stops the write itself — including one a frozen process
/// (SIGSTOP, a long GC-like pause, a partition) would send on waking after its lease expired.
pub fn guarded(client: Client, leadership: Leadership) -> Client {
    let namespace = client.default_namespace().to_string();
    Client::new(Guard { client, leadership }, namespace)
}

#[derive(Clone)]
struct Guard {
    client: Client,
    leadership: Leadership,
}

type Response = http::Response<kube::client::Body>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<kube::client::Body>> for Guard {
    type Response = Response;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, std::result::Result<Response, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let reads = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
        if !reads && !self.leadership.is_leader() {
            return Box::pin(async { Err(Box::new(NotLeader) as BoxError) });
        }
        let client = self.client.clone();
        Box::pin(async move { client.send(request).await.map_err(BoxError::from) })
    }
}

/// Starts electing on Lease `name` in `namespace` as `identity`; runs until `stop` resolves,
/// then gives the lease up so that another replica takes over at once (await the handle
/// before exiting, or the release is lost and the others wait out the lease).
pub fn start(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (leadership, tx) = Leadership::elected();
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let (name, identity) = (name.to_string(), identity.to_string());
    let until = leadership.until.clone();
    let task = tokio::spawn(async move {
        tokio::pin!(stop);
        let mut seen = Seen::default();
        loop {
            let started = Instant::now();
            match try_hold(&api, &name, &identity, &mut seen).await {
                Ok(true) => {
                    if let Ok(mut u) = until.lock() {
                        *u = Some(started + DURATION - SKEW);
                    }
                    if !*tx.borrow() {
                        tracing::info!(lease = %name, %identity, "became the leader: reconciling");
                        let _ = tx.send(true);
                    }
                }
                Ok(false) => {
                    if *tx.borrow() {
                        tracing::warn!(lease = %name, %identity, "lost the lease: not reconciling");
                        let _ = tx.send(false);
                    }
                }
                // The deadline runs out by itself if this goes on.
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, "cannot renew or acquire the lease")
                }
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(RENEW_EVERY) => {}
            }
        }
        if let Ok(mut u) = until.lock() {
            *u = Some(Instant::now());
        }
        let _ = tx.send(false);
        match release(&api, &name, &identity).await {
            Ok(()) => tracing::info!(lease = %name, "gave the lease up"),
            Err(e) => tracing::warn!(lease = %name, error = %e, "could not give up the lease"),
        }
    });
    (leadership, task)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// The lease as this replica last saw it change, and when (by its own monotonic clock).
#[derive(Default)]
struct Seen {
    version: Option<String>,
    at: Option<Instant>,
}

impl Seen {
    /// Records `lease` and tells whether it has gone unrenewed for its whole duration, timed
    /// from the moment this replica first saw its current version.
    fn expired(&mut self, lease: &Lease, now: Instant) -> bool {
        let version = lease.metadata.resource_version.clone();
        if version != self.version || self.at.is_none() {
            self.version = version;
            self.at = Some(now);
        }
        let seconds = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or(0);
        let duration = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        self.at
            .is_some_and(|at| now.saturating_duration_since(at) > duration)
    }
}

/// One step: take the lease if it is free, expired or ours; Ok(true) when held afterwards.
async fn try_hold(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    seen: &mut Seen,
) -> kube::Result<bool> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.into()),
                lease_duration_seconds: Some(DURATION.as_secs() as i32),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&params, &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let expired = seen.expired(&lease, Instant::now());
    let spec = lease.spec.get_or_insert_with(Default::default);
    let mine = spec.holder_identity.as_deref() == Some(identity);
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
    if !mine && !free && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(DURATION.as_secs() as i32);
    // resourceVersion as read: a concurrent taker makes this a 409.
    match api.replace(name, &params, &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, name: &str, identity: &str) -> kube::Result<()> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(
        name,
        &PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &lease,
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_a_whole_duration_after_it_was_last_seen_changing() {
        let lease = |version: &str| Lease {
            metadata: ObjectMeta {
                resource_version: Some(version.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("a".into()),
                // A renewTime far in the past (a skewed clock) does not matter.
                renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
                lease_duration_seconds: Some(10),
                ..Default::default()
            }),
        };
        let t0 = Instant::now();
        let mut seen = Seen::default();
        assert!(
            !seen.expired(&lease("1"), t0),
            "first sight starts the clock"
        );
        assert!(!seen.expired(&lease("1"), t0 + Duration::from_secs(9)));
        assert!(seen.expired(&lease("1"), t0 + Duration::from_secs(11)));
        assert!(
            !seen.expired(&lease("2"), t0 + Duration::from_secs(12)),
            "renewed: the clock restarts"
        );
        assert!(seen.expired(&lease("2"), t0 + Duration::from_secs(23)));
    }

    #[tokio::test]
    async fn leadership_is_a_local_deadline() {
        let (l, tx) = Leadership::elected();
        assert!(!l.is_leader(), "not before the first renewal");
        if let Ok(mut u) = l.until.lock() {
            *u = Some(Instant::now() + Duration::from_secs(60));
        }
        tx.send(true).expect("send");
        assert!(l.is_leader());
        // No renewal comes: the deadline passes, and leadership with it, by this clock alone.
        if let Ok(mut u) = l.until.lock() {
            *u = Some(Instant::now());
        }
        assert!(!l.is_leader());
        tokio::time::timeout(Duration::from_secs(1), l.lost())
            .await
            .expect("lost resolves");
        assert!(Leadership::always().is_leader());
    }

    #[tokio::test]
    async fn a_follower_sends_reads_but_no_write() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let api = tower::service_fn(move |_req: http::Request<kube::client::Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(200)
                        .body(kube::client::Body::from(b"{}".to_vec()))
                        .expect("response"),
                )
            }
        });
        let (leadership, tx) = Leadership::elected();
        let client = guarded(Client::new(api, "default"), leadership.clone());
        let request = |method: &str| {
            http::Request::builder()
                .method(method)
                .uri("/api/v1/namespaces")
                .body(kube::client::Body::from(b"{}".to_vec()))
                .expect("request")
        };
        assert!(client.send(request("GET")).await.is_ok());
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let refused = client.send(request(method)).await.expect_err(method);
            assert!(refused.to_string().contains("not the leader"), "{refused}");
        }
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "only the read reached the API server"
        );
        if let Ok(mut u) = leadership.until.lock() {
            *u = Some(Instant::now() + Duration::from_secs(60));
        }
        tx.send(true).expect("send");
        assert!(
            client.send(request("PATCH")).await.is_ok(),
            "the leader writes"
        );
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }
}
