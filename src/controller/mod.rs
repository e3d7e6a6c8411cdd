//! The controller: for each organization's namespace, observe → `plan()` → `apply()`.
//!
//! The unit of reconciliation is the organization's home namespace, not a single object: a
//! Project's RoleBindings depend on every Membership, and a Membership's status on the
//! Organization and every Project, so the whole organization is planned from one consistent
//! snapshot of the caches. The root of the kube `Controller` is therefore `Namespace`; changes
//! to roster's kinds and to roster-managed RoleBindings and namespaces map to it.

mod apply;
pub mod credentials;
mod error;
pub mod guard;
pub mod labels;
mod own_status;
pub mod plan;
mod status;

use crate::Reason;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

pub use crate::cache::{Caches, Stores};
pub use error::{Error, Result};
pub use plan::{Settings, World};

use crate::api::{Membership, Organization, Project};

pub use crate::api::contract::FIELD_MANAGER;

#[derive(Clone)]
pub struct Config {
    pub settings: Settings,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How often an unchanged organization is planned again (and, if all is well, not written).
    pub resync: Duration,
    /// The identity service, when it runs: invitations, unlocks, MFA resets.
    pub identity: Option<Arc<crate::identity::service::Identity>>,
    /// Whether this replica may write: only the leader reconciles.
    pub leadership: crate::runtime::Leadership,
}

pub struct Context {
    client: Client,
    recorder: Recorder,
    stores: Stores,
    namespaces: Store<Namespace>,
    config: Config,
    failures: Mutex<HashMap<String, u32>>,
    /// Organization statuses written and not yet in the cache (own_status.rs says why).
    own_status: own_status::OwnStatus,
}

/// Organizations reconciled at once. Unbounded, a cold start with 20 organizations of 1,000
/// members planned all of them together — every planned status in memory at once — while the
/// API server, which sets the pace, took the writes no faster.
const RECONCILES_AT_ONCE: u16 = 8;

/// Runs the controller on `caches` until `shutdown` resolves.
pub async fn run(
    client: Client,
    caches: Caches,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    // Paged lists, as the caches' (cache::Caches::new says why).
    let wc = watcher::Config::default();
    let managed = wc.clone().labels(&labels::managed_selector());
    let controller = Controller::new(Api::<Namespace>::all(client.clone()), wc)
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILES_AT_ONCE))
        .trigger_backoff(crate::cache::watch_backoff());
    let namespaces = controller.store();
    let (stores, triggers) = caches.split();
    let ctx_leadership = config.leadership.clone();
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
        namespaces,
        config,
        failures: Mutex::new(HashMap::new()),
        own_status: Default::default(),
    });
    let mut controller =
        controller.watches(Api::<Namespace>::all(client), managed, organization_label);
    for changed in triggers.0 {
        controller = controller.reconcile_on(changed.map(|org| ObjectRef::new(&org)));
    }
    // On becoming leader, everything is planned again: another replica led until now.
    let gained = ctx_leadership.gained();
    controller
        .reconcile_all_on(gained)
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

fn organization_label<K: Resource>(obj: K) -> Option<ObjectRef<Namespace>> {
    obj.meta()
        .labels
        .as_ref()?
        .get(labels::ORGANIZATION)
        .map(|o| ObjectRef::new(o))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let name = ns.name_any();
    let started = std::time::Instant::now();
    // Followers keep their caches (the webhook and identity read them) and write nothing.
    if !ctx.config.leadership.is_leader() {
        return Ok(Action::await_change());
    }
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
    // A lease lost meanwhile stops the writes at once (they are idempotent: the new leader
    // plans again from what is there).
    let applied = tokio::select! {
        r = apply::apply(&ctx, &world, &plan) => r,
        _ = ctx.config.leadership.lost() => {
            tracing::warn!(namespace = %name, "lease lost during a reconcile: stopped");
            return Ok(Action::await_change());
        }
    };
    if let Err(e) = applied {
        apply::report_failure(&ctx, &world, &e).await;
        ctx.config
            .metrics
            .reconciled(false, e.reason(), started.elapsed(), 0);
        return Err(e);
    }
    ctx.config
        .metrics
        .reconciled(true, "Converged", started.elapsed(), writes);
    if let Ok(mut f) = ctx.failures.lock() {
        f.remove(&name);
    }
    if writes > 0 {
        tracing::info!(
            namespace = %name,
            writes,
            rolebindings = plan.rolebindings.len() + plan.delete_rolebindings.len(),
            namespaces = plan.create_namespaces.len() + plan.adopt_namespaces.len() + plan.delete_namespaces.len() + plan.release_namespaces.len(),
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

impl Context {
    async fn wait_for_caches(&self) -> Result<()> {
        self.stores.ready().await.map_err(Error::CacheNotReady)
    }

    fn observe(&self, home: &Namespace, now: Timestamp) -> World {
        let ns = home.name_any();
        let s = &self.stores;
        let in_ns = |meta: &kube::core::ObjectMeta| meta.namespace.as_deref() == Some(ns.as_str());
        // A namespace roster manages as another organization's project namespace is nobody's
        // home (the webhook refuses such an Organization; this covers one made before).
        let home_is_project_of = home
            .labels()
            .get(labels::ORGANIZATION)
            .filter(|o| {
                **o != ns
                    && home.labels().get(labels::MANAGED_BY).map(String::as_str)
                        == Some(labels::MANAGER)
            })
            .cloned();
        let (orgs, stray_orgs): (Vec<Organization>, Vec<Organization>) = s
            .orgs
            .state()
            .iter()
            .filter(|o| in_ns(&o.metadata))
            .map(|o| (**o).clone())
            .partition(|o| o.name_any() == ns && home_is_project_of.is_none());
        let projects: Vec<Project> = s
            .projects
            .state()
            .iter()
            .filter(|p| in_ns(&p.metadata))
            .map(|p| (**p).clone())
            .collect();
        let memberships: Vec<Arc<Membership>> = s.memberships.in_namespace(&ns);
        let rolebindings: Vec<k8s_openapi::api::rbac::v1::RoleBinding> = s
            .rolebindings
            .state()
            .iter()
            .filter(|b| b.organization() == Some(ns.as_str()))
            .map(|b| b.rolebinding())
            .collect();
        // The projects' namespaces, and those holding roster's bindings: a Project gone
        // without clean-up left its bindings in the namespace roster labelled for it, and the
        // guard tells them from bindings planted elsewhere by those labels.
        let namespaces: BTreeMap<String, Namespace> = projects
            .iter()
            .map(|p| plan::project_namespace(&ns, p))
            .chain(
                rolebindings
                    .iter()
                    .filter_map(|b| b.metadata.namespace.clone()),
            )
            .filter_map(|n| {
                self.namespaces
                    .get(&ObjectRef::new(&n))
                    .map(|o| (n, (*o).clone()))
            })
            .collect();
        let credentials = s
            .credentials
            .as_ref()
            .map(|c| {
                c.state()
                    .iter()
                    .filter(|c| c.organization.as_deref() == Some(ns.as_str()))
                    .filter_map(|c| match c.record() {
                        Ok(r) if !r.email.is_empty() => Some((r.email.clone(), r)),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!(secret = %c.name, error = %e, "unreadable credential record ignored");
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut org = orgs.into_iter().next();
        self.own_status.show(&ns, org.as_mut());
        World {
            namespace: ns,
            home_terminating: home.metadata.deletion_timestamp.is_some(),
            org,
            stray_orgs,
            home_is_project_of,
            projects,
            memberships,
            namespaces,
            rolebindings,
            credentials,
            now,
        }
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod apply_tests;
