//! The controller: for each organization's namespace, observe → `plan()` → `apply()`.
//!
//! The unit of reconciliation is the organization's home namespace, not a single object: a
//! Project's RoleBindings depend on every Membership, and a Membership's status on the
//! Organization and every Project, so the whole organization is planned from one consistent
//! snapshot of the caches. The root of the kube `Controller` is therefore `Namespace`; changes
//! to roster's kinds and to roster-managed RoleBindings and namespaces map to it.

mod apply;
mod error;
pub mod labels;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

pub use error::{Error, Result};
pub use plan::{Settings, World};

use crate::api::{Membership, Organization, Project};

/// The one field manager roster writes with (server-side apply and plain patches alike).
pub const FIELD_MANAGER: &str = "roster";

#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    /// How often an unchanged organization is planned again (and, if all is well, not written).
    pub resync: Duration,
}

struct Stores {
    orgs: Store<Organization>,
    projects: Store<Project>,
    memberships: Store<Membership>,
    rolebindings: Store<RoleBinding>,
    namespaces: Store<Namespace>,
}

pub struct Context {
    client: Client,
    recorder: Recorder,
    stores: Stores,
    /// Becomes true once every cache has listed its objects (see `watch_readiness`).
    caches_ready: tokio::sync::watch::Receiver<Option<Result<(), String>>>,
    config: Config,
    failures: Mutex<HashMap<String, u32>>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let wc = watcher::Config::default().any_semantic();
    let (orgs, org_events) = reflected::<Organization>(Api::all(client.clone()), wc.clone());
    let (projects, project_events) = reflected::<Project>(Api::all(client.clone()), wc.clone());
    let (memberships, membership_events) =
        reflected::<Membership>(Api::all(client.clone()), wc.clone());
    let managed = wc.clone().labels(&labels::managed_selector());
    let (rolebindings, rb_events) =
        reflected::<RoleBinding>(Api::all(client.clone()), managed.clone());

    let controller = Controller::new(Api::<Namespace>::all(client.clone()), wc.clone())
        .trigger_backoff(watch_backoff());
    let namespaces = controller.store();
    let stores = Stores {
        orgs,
        projects,
        memberships,
        rolebindings,
        namespaces,
    };
    let caches_ready = watch_readiness(&stores);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "roster".into(),
                instance: None,
            },
        ),
        client: client.clone(),
        stores,
        caches_ready,
        config,
        failures: Mutex::new(HashMap::new()),
    });
    controller
        .watches_stream(org_events, home)
        .watches_stream(project_events, home)
        .watches_stream(membership_events, home)
        .watches_stream(rb_events, organization_label)
        .watches(Api::<Namespace>::all(client), managed, organization_label)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(namespace = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not run"),
            }
        })
        .await;
}

/// A reflector whose store the reconciler reads, and the stream of objects that should
/// trigger a reconcile: a new spec, a deletion, or an object gone. Status-only changes (which
/// roster itself writes) do not trigger.
fn reflected<K>(
    api: Api<K>,
    wc: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + use<K>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let mut seen: HashMap<ObjectRef<K>, u64> = HashMap::new();
    let stream = watcher(api, wc)
        .backoff(watch_backoff())
        .reflect(writer)
        .filter_map(move |event| {
            let out = match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    let fingerprint = trigger_fingerprint(&obj);
                    let key = ObjectRef::from_obj(&obj);
                    (seen.insert(key, fingerprint) != Some(fingerprint)).then_some(Ok(obj))
                }
                Ok(watcher::Event::Delete(obj)) => {
                    seen.remove(&ObjectRef::from_obj(&obj));
                    Some(Ok(obj))
                }
                Ok(watcher::Event::Init) => {
                    tracing::debug!(kind = %K::kind(&()), "listing");
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    tracing::debug!(kind = %K::kind(&()), "listed");
                    None
                }
                // The watch retries on its own (watch_backoff). Passing the error on would put the
                // Controller's trigger backoff on *all* trigger streams, freezing every cache for up to
                // a minute after an API server restart.
                Err(e) => {
                    tracing::debug!(kind = %K::kind(&()), error = %e, "watch error; retrying");
                    None
                }
            };
            std::future::ready(out)
        });
    (store, stream)
}

/// kube's default watch backoff grows to 30 s; after an API server restart that leaves roster
/// blind for up to half a minute. Retrying a list at most every 8 s costs little and keeps
/// convergence after an outage within seconds.
fn watch_backoff() -> ResetTimerBackoff<WatchBackoff> {
    ResetTimerBackoff::new(WatchBackoff(0), Duration::from_secs(60))
}

/// 500 ms doubling to 8 s.
struct WatchBackoff(u32);

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let delay = Duration::from_millis(500) * 2u32.saturating_pow(self.0.min(4));
        self.0 = self.0.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// What about an object makes it worth planning again. For roster's kinds the spec is covered by
/// `generation`; RoleBindings have no generation, so their content counts.
fn trigger_fingerprint<K: Resource + serde::Serialize>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match meta.generation {
        Some(g) => g.hash(&mut h),
        None => serde_json::to_string(obj).unwrap_or_default().hash(&mut h),
    }
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("roster.dev/"))
        .for_each(|kv| kv.hash(&mut h));
    h.finish()
}

fn home<K: Resource>(obj: K) -> Option<ObjectRef<Namespace>> {
    obj.meta().namespace.as_deref().map(ObjectRef::new)
}

fn organization_label<K: Resource>(obj: K) -> Option<ObjectRef<Namespace>> {
    obj.meta()
        .labels
        .as_ref()?
        .get(labels::ORGANIZATION)
        .map(|o| ObjectRef::new(o))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let name = ns.name_any();
    ctx.wait_for_caches().await?;
    // Kubernetes times have whole seconds: planning with sub-second precision would make a
    // status read back differ from the one written, and write it again.
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let world = ctx.observe(&ns, now);
    if world.org.is_none()
        && world.stray_orgs.is_empty()
        && world.projects.is_empty()
        && world.memberships.is_empty()
        && world.rolebindings.is_empty()
    {
        return Ok(Action::await_change());
    }
    let plan = plan::plan(&world, &ctx.config.settings);
    let writes = plan.writes();
    apply::apply(&ctx, &world, &plan).await?;
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&name);
    }
    if writes > 0 {
        tracing::info!(
            namespace = %name,
            writes,
            rolebindings = plan.rolebindings.len() + plan.delete_rolebindings.len(),
            namespaces = plan.namespaces.len() + plan.delete_namespaces.len(),
            statuses = plan.membership_status.len() + plan.project_status.len() + usize::from(plan.org_status.is_some()),
            finalizers = plan.add_finalizer.len() + plan.remove_finalizer.len(),
            events = plan.events.len(),
            "converged"
        );
    }
    let mut wait = ctx.config.resync;
    if let Some(at) = plan.requeue_at {
        let until = at.duration_since(Timestamp::now());
        let until = Duration::try_from(until).unwrap_or(Duration::ZERO) + Duration::from_secs(1);
        wait = wait.min(until);
    }
    Ok(Action::requeue(wait))
}

fn error_policy(ns: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    let name = ns.name_any();
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(name.clone()).or_insert(0);
            *n += 1;
            *n
        })
        .unwrap_or(1);
    let wait = error::backoff(failures - 1);
    tracing::warn!(namespace = %name, reason = err.reason(), error = %err, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Planning from a half-filled cache would revoke access that exists, so no reconcile runs
/// before every store has listed its objects. `Store::wait_until_ready` wakes only one of several
/// concurrent waiters, so a single task waits on the stores and publishes the outcome on a
/// channel every reconcile can wait on.
fn watch_readiness(s: &Stores) -> tokio::sync::watch::Receiver<Option<Result<(), String>>> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let (orgs, projects, memberships, rolebindings, namespaces) = (
        s.orgs.clone(),
        s.projects.clone(),
        s.memberships.clone(),
        s.rolebindings.clone(),
        s.namespaces.clone(),
    );
    tokio::spawn(async move {
        let outcome = async {
            orgs.wait_until_ready().await.map_err(|_| "organizations")?;
            projects.wait_until_ready().await.map_err(|_| "projects")?;
            memberships
                .wait_until_ready()
                .await
                .map_err(|_| "memberships")?;
            rolebindings
                .wait_until_ready()
                .await
                .map_err(|_| "rolebindings")?;
            namespaces
                .wait_until_ready()
                .await
                .map_err(|_| "namespaces")
        }
        .await
        .map_err(|which| format!("the {which} watch stopped before listing"));
        let _ = tx.send(Some(outcome));
    });
    rx
}

impl Context {
    async fn wait_for_caches(&self) -> Result<()> {
        let mut rx = self.caches_ready.clone();
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::CacheNotReady("the readiness watcher stopped".into()))?
            .clone();
        match outcome {
            Some(Err(e)) => Err(Error::CacheNotReady(e)),
            _ => Ok(()),
        }
    }

    fn observe(&self, home: &Namespace, now: Timestamp) -> World {
        let ns = home.name_any();
        let s = &self.stores;
        let in_ns = |meta: &kube::core::ObjectMeta| meta.namespace.as_deref() == Some(ns.as_str());
        let (orgs, stray_orgs): (Vec<Organization>, Vec<Organization>) = s
            .orgs
            .state()
            .iter()
            .filter(|o| in_ns(&o.metadata))
            .map(|o| (**o).clone())
            .partition(|o| o.name_any() == ns);
        let projects: Vec<Project> = s
            .projects
            .state()
            .iter()
            .filter(|p| in_ns(&p.metadata))
            .map(|p| (**p).clone())
            .collect();
        let memberships: Vec<Membership> = s
            .memberships
            .state()
            .iter()
            .filter(|m| in_ns(&m.metadata))
            .map(|m| (**m).clone())
            .collect();
        let namespaces: BTreeMap<String, Namespace> = projects
            .iter()
            .map(|p| plan::project_namespace(&ns, p))
            .filter_map(|n| {
                s.namespaces
                    .get(&ObjectRef::new(&n))
                    .map(|o| (n, (*o).clone()))
            })
            .collect();
        let rolebindings = s
            .rolebindings
            .state()
            .iter()
            .filter(|rb| rb.labels().get(labels::ORGANIZATION) == Some(&ns))
            .map(|rb| (**rb).clone())
            .collect();
        World {
            namespace: ns,
            home_terminating: home.metadata.deletion_timestamp.is_some(),
            org: orgs.into_iter().next(),
            stray_orgs,
            projects,
            memberships,
            namespaces,
            rolebindings,
            // TOTP enrolment lives in the identity store, which does not exist yet: nobody is
            // enrolled, and the MFA grace period decides access.
            enrolled: BTreeSet::new(),
            now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MembershipSpec, MembershipStatus, Phase};

    fn member() -> Membership {
        let mut m = Membership::new(
            "bob",
            MembershipSpec {
                email: "bob@acme.example".into(),
                display_name: None,
                role: None,
                projects: vec![],
                disabled: false,
                mfa: None,
                expires_at: None,
            },
        );
        m.metadata.generation = Some(1);
        m
    }

    #[test]
    fn status_writes_do_not_trigger_but_spec_and_deletion_do() {
        let base = member();
        let mut status_only = base.clone();
        status_only.status = Some(MembershipStatus {
            phase: Some(Phase::Active),
            ..Default::default()
        });
        status_only.metadata.resource_version = Some("42".into());
        assert_eq!(
            trigger_fingerprint(&base),
            trigger_fingerprint(&status_only)
        );

        let mut spec = base.clone();
        spec.metadata.generation = Some(2);
        assert_ne!(trigger_fingerprint(&base), trigger_fingerprint(&spec));

        let mut deleting = base.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        assert_ne!(trigger_fingerprint(&base), trigger_fingerprint(&deleting));

        let mut nonce = base.clone();
        nonce.metadata.annotations =
            Some([("roster.dev/unlock".to_string(), "n1".to_string())].into());
        assert_ne!(trigger_fingerprint(&base), trigger_fingerprint(&nonce));
    }

    #[test]
    fn watch_backoff_is_capped_at_eight_seconds() {
        let delays: Vec<u64> = WatchBackoff(0)
            .take(7)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
