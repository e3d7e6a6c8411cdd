//! `apply()`: carries out a plan in an order that takes access away first and never lets one
//! part that cannot converge hold back another:
//! 1. removals of access — stale RoleBindings deleted, existing ones updated (their namespaces
//!    exist; nothing else is needed first); then a replaced invitation link's binding, which
//!    opens nothing any more, but only once its replacement's is written;
//! 2. finalizers, then per project its namespace (created, or a handed-over one adopted) and
//!    its new RoleBindings; a project whose finalizer or namespace fails is skipped, the others
//!    go on;
//! 3. namespaces deleted or handed back, bootstrap Memberships, identity actions, statuses
//!    (a project that failed reports it), Events, finalizer removal (only where the clean-up
//!    succeeded).
//!
//! The first failure is returned after everything independent of it was done.

use crate::Reason;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::credentials::IdentityAction;
use super::plan::{Plan, PlannedEvent, Target, World};
use super::{Context, Error, FIELD_MANAGER, Result, guard, labels, own_status};
use crate::api::contract::MEMBERSHIP_LABEL;
use crate::api::{Membership, Organization, Project};
use crate::condition;

/// Failures of one reconcile, by what they hold back.
#[derive(Default)]
struct Failures {
    first: Option<Error>,
    count: usize,
    /// Projects (by name) with a failed write: their statuses say so, their finalizers stay.
    projects: BTreeMap<String, String>,
    /// Namespaces whose creation or adoption failed: their bindings wait.
    namespaces: BTreeSet<String>,
    org_failed: bool,
}

impl Failures {
    fn note(&mut self, w: &World, project: Option<&str>, e: Error) {
        tracing::warn!(namespace = %w.namespace, project, reason = e.reason(), error = %e, "write failed; continuing with what does not depend on it");
        self.count += 1;
        match project {
            Some(p) => {
                self.projects
                    .entry(p.to_string())
                    .or_insert_with(|| format!("{}: {e}", e.reason()));
            }
            None => self.org_failed = true,
        }
        if self.first.is_none() {
            self.first = Some(e);
        }
    }
}

fn project_of(meta: &kube::core::ObjectMeta) -> Option<&str> {
    meta.labels
        .as_ref()?
        .get(labels::PROJECT)
        .map(String::as_str)
}

async fn delete_binding(ctx: &Context, (rb_ns, name): &(String, String)) -> Result<()> {
    ignore_not_found(
        Api::<RoleBinding>::namespaced(ctx.client.clone(), rb_ns)
            .delete(name, &DeleteParams::default())
            .await,
    )
    .map_err(Error::api(format!(
        "deletion of RoleBinding {rb_ns}/{name}"
    )))
}

/// Links replaced by links whose bindings are new: the new bindings by member, and the old
/// ones (which plan() deletes) with their keys and members.
struct Replaced<'a> {
    new: HashMap<String, Vec<&'a RoleBinding>>,
    old: Vec<(&'a (String, String), &'a RoleBinding, String)>,
}

impl<'a> Replaced<'a> {
    fn of(w: &'a World, plan: &'a Plan) -> Replaced<'a> {
        let ns = w.namespace.as_str();
        let member = |rb: &RoleBinding| rb.labels().get(MEMBERSHIP_LABEL).cloned();
        let observed: HashMap<(String, String), &RoleBinding> =
            w.rolebindings.iter().map(|rb| (key(rb), rb)).collect();
        let mut new: HashMap<String, Vec<&RoleBinding>> = HashMap::new();
        for rb in &plan.rolebindings {
            if guard::is_link(rb, ns)
                && !observed.contains_key(&key(rb))
                && let Some(m) = member(rb)
            {
                new.entry(m).or_default().push(rb);
            }
        }
        let old: Vec<_> = plan
            .delete_rolebindings
            .iter()
            .filter_map(|k| {
                let rb = *observed.get(k)?;
                let m = member(rb).filter(|m| guard::is_link(rb, ns) && new.contains_key(m))?;
                Some((k, rb, m))
            })
            .collect();
        new.retain(|m, _| old.iter().any(|(_, _, o)| o == m));
        Replaced { new, old }
    }

    fn is_new(&self, rb: &RoleBinding) -> bool {
        rb.labels()
            .get(MEMBERSHIP_LABEL)
            .and_then(|m| self.new.get(m))
            .is_some_and(|rbs| rbs.iter().any(|r| key(r) == key(rb)))
    }

    fn is_old(&self, k: &(String, String)) -> bool {
        self.old.iter().any(|(o, _, _)| *o == k)
    }

    /// Whether `old` names someone none of `member`'s new bindings does.
    fn names_others(&self, member: &str, old: &RoleBinding) -> bool {
        let readers: BTreeSet<&str> = self
            .new
            .get(member)
            .into_iter()
            .flatten()
            .flat_map(|rb| rb.subjects.iter().flatten())
            .map(|s| s.name.as_str())
            .collect();
        old.subjects
            .iter()
            .flatten()
            .any(|s| !readers.contains(s.name.as_str()))
    }
}

fn key(rb: &RoleBinding) -> (String, String) {
    (
        rb.metadata.namespace.clone().unwrap_or_default(),
        rb.name_any(),
    )
}

pub async fn apply(ctx: &Context, w: &World, plan: &Plan) -> Result<()> {
    let c = &ctx.client;
    let ns = w.namespace.as_str();
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    let mut failed = Failures::default();
    let project_of_binding = |(rb_ns, name): &(String, String)| {
        w.rolebindings
            .iter()
            .chain(&plan.rolebindings)
            .find(|rb| key(rb) == (rb_ns.clone(), name.clone()))
            .and_then(|rb| project_of(&rb.metadata).map(str::to_string))
    };

    // 1. Removals of access: deletions, then updates of bindings that exist (and stay). The
    // binding of a replaced link (which opens nothing any more) goes only once its
    // replacement's is written, at the end of this step: deleted first, it left a moment in
    // which the watch showed neither, and a reconcile during a hold took the member's links
    // for never bound and bound the new one to the owner alone.
    let replaced = Replaced::of(w, plan);
    let mut deletions = Vec::new();
    for k in plan
        .delete_rolebindings
        .iter()
        .filter(|k| !replaced.is_old(k))
    {
        deletions.push((k, delete_binding(ctx, k)));
    }
    // A link binding that could not be narrowed (or deleted) still names a former reader,
    // but only of its own link: its replacement is written under new names, and the old
    // link stops opening anything the moment it is replaced.
    let deleted = at_once(deletions).await;
    for (k, r) in deleted {
        if let Err(e) = r {
            failed.note(w, project_of_binding(k).as_deref(), e);
        }
    }
    let existing: BTreeSet<(String, String)> = w
        .rolebindings
        .iter()
        .map(key)
        .filter(|k| !plan.delete_rolebindings.contains(k))
        .collect();
    let (updates, creations): (Vec<&RoleBinding>, Vec<&RoleBinding>) = plan
        .rolebindings
        .iter()
        .partition(|rb| existing.contains(&key(rb)));
    let updates = updates
        .into_iter()
        .map(|rb| (rb, apply_binding(ctx, rb, &ssa)))
        .collect();
    for (rb, r) in at_once(updates).await {
        if let Err(e) = r {
            failed.note(w, project_of(&rb.metadata), e);
        }
    }
    // Replaced links: the new bindings (in the organization's own namespace, which needs
    // nothing made first), then the old ones of the members whose new ones were all written.
    // A member whose new binding failed keeps the old one until a reconcile writes it, unless
    // it names someone the new ones do not (a reader cut off since): that one goes at once.
    let ssa_ref = &ssa;
    let writes = replaced
        .new
        .iter()
        .map(|(m, rbs)| {
            let ssa = ssa_ref;
            (m, async move {
                for rb in rbs {
                    apply_binding(ctx, rb, ssa).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    let mut written = BTreeSet::new();
    for (m, r) in at_once(writes).await {
        match r {
            Ok(()) => {
                written.insert(m.as_str());
            }
            Err(e) => failed.note(w, None, e),
        }
    }
    let deletions = replaced
        .old
        .iter()
        .filter(|(_, rb, m)| written.contains(m.as_str()) || replaced.names_others(m, rb))
        .map(|(k, _, _)| (*k, delete_binding(ctx, k)))
        .collect();
    for (k, r) in at_once(deletions).await {
        if let Err(e) = r {
            failed.note(w, project_of_binding(k).as_deref(), e);
        }
    }

    // 2. Finalizers before what they clean up, then namespaces and new bindings per project.
    let finalizers = plan
        .add_finalizer
        .iter()
        .map(|t| (t, set_finalizer(ctx, w, t, true)))
        .collect();
    let finalized = at_once(finalizers).await;
    for (t, r) in finalized {
        if let Err(e) = r {
            let project = match t {
                Target::Project(p) => Some(p.as_str()),
                _ => None,
            };
            failed.note(w, project, e);
        }
    }
    let mut to_create = Vec::new();
    for n in &plan.create_namespaces {
        let Some(project) = project_of(&n.metadata) else {
            continue;
        };
        if failed.projects.contains_key(project) {
            failed.namespaces.insert(n.name_any());
            continue;
        }
        to_create.push((n, async move {
            let name = n.name_any();
            match Api::<Namespace>::all(c.clone())
                .create(&post_params(), n)
                .await
            {
                Ok(_) => Ok(()),
                // Made by someone else since it was observed: not ours. The next plan sees it
                // and reports it as foreign (annotate it roster.dev/adopt to hand it over).
                Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::NamespaceTaken(name)),
                Err(e) => Err(Error::api(format!("creation of namespace {name}"))(e)),
            }
        }));
    }
    let created = at_once(to_create).await;
    for (n, r) in created {
        if let Err(e) = r {
            failed.namespaces.insert(n.name_any());
            failed.note(w, project_of(&n.metadata), e);
        }
    }
    for n in &plan.adopt_namespaces {
        let name = n.name_any();
        let project = project_of(&n.metadata).map(str::to_string);
        if project
            .as_ref()
            .is_some_and(|p| failed.projects.contains_key(p))
        {
            failed.namespaces.insert(name);
            continue;
        }
        let r = Api::<Namespace>::all(c.clone())
            .patch(&name, &ssa, &Patch::Apply(n))
            .await
            .map(drop)
            .map_err(Error::api(format!("adoption of namespace {name}")));
        if let Err(e) = r {
            failed.namespaces.insert(name);
            failed.note(w, project.as_deref(), e);
        }
    }
    let creations = creations
        .into_iter()
        .filter(|rb| {
            !replaced.is_new(rb)
                && !failed.namespaces.contains(&key(rb).0)
                && !project_of(&rb.metadata).is_some_and(|p| failed.projects.contains_key(p))
        })
        .map(|rb| (rb, apply_binding(ctx, rb, &ssa)))
        .collect();
    for (rb, r) in at_once(creations).await {
        if let Err(e) = r {
            // A creation is a forced apply too: it may have been meant to narrow a binding
            // the cache did not show yet (red team 23).
            failed.note(w, project_of(&rb.metadata), e);
        }
    }

    // 3. The rest.
    for n in &plan.delete_namespaces {
        let r = ignore_not_found(
            Api::<Namespace>::all(c.clone())
                .delete(n, &DeleteParams::default())
                .await,
        )
        .map_err(Error::api(format!("deletion of namespace {n}")));
        if let Err(e) = r {
            let project = namespace_project(w, n);
            failed.note(w, project.as_deref(), e);
        }
    }
    for n in &plan.release_namespaces {
        // An apply with none of roster's fields takes roster's labels and annotation off.
        let bare = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
        let r = ignore_not_found(
            Api::<Namespace>::all(c.clone())
                .patch(n, &ssa, &Patch::Apply(&bare))
                .await,
        )
        .map_err(Error::api(format!("handing back namespace {n}")));
        if let Err(e) = r {
            let project = namespace_project(w, n);
            failed.note(w, project.as_deref(), e);
        }
    }
    for m in &plan.create_memberships {
        let created = Api::<Membership>::namespaced(c.clone(), ns)
            .create(&post_params(), m)
            .await;
        match created {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => failed.note(
                w,
                None,
                Error::api(format!("creation of Membership {}", m.name_any()))(e),
            ),
        }
    }
    for name in &plan.delete_memberships {
        let r = ignore_not_found(
            Api::<Membership>::namespaced(c.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await,
        )
        .map_err(Error::api(format!(
            "deletion of superseded bootstrap Membership {name}"
        )));
        if let Err(e) = r {
            failed.note(w, None, e);
        }
    }

    // An invitation that cannot go out (SMTP down) must not hold back statuses.
    if let Err(e) = identity(ctx, w, plan).await {
        failed.note(w, None, e);
    }

    let stray_uids = uids(&w.stray_orgs);
    for (name, status) in &plan.stray_org_status {
        let uid = stray_uids.get(name.as_str()).copied();
        if let Err(e) = patch_status::<Organization>(ctx, ns, name, uid, status).await {
            failed.note(w, None, e);
        }
    }
    // Statuses are independent of each other: several in flight, so that a large
    // organization converges at the pace of the API server, not of one round trip at a time.
    let statuses = project_statuses(w, plan, &failed.projects);
    let names: Vec<String> = statuses.iter().map(|(n, _)| n.clone()).collect();
    let project_results =
        patch_statuses::<Project, _>(ctx, ns, &statuses, &uids(&w.projects)).await;
    let mut moved = Moved::default();
    for (name, r) in names.into_iter().zip(project_results) {
        match r {
            Ok(rv) => moved.projects.push((name, rv)),
            Err(e) => failed.note(w, Some(&name), e),
        }
    }
    let member_uids = uids(w.memberships.iter().map(|m| &**m));
    let member_results =
        patch_statuses::<Membership, _>(ctx, ns, &plan.membership_status, &member_uids).await;
    for ((name, _), r) in plan.membership_status.iter().zip(member_results) {
        match r {
            Ok(rv) => moved.members.push((name.clone(), rv)),
            Err(e) => failed.note(w, None, e),
        }
    }
    // The Organization's status last, and only when everything before it went through: a
    // failed reconcile reports Ready=False (report_failure) instead, without a Ready=True in
    // between that would make GitOps tools see the organization flap.
    if let Some(status) = &plan.org_status
        && failed.first.is_none()
    {
        let uid = w.org.as_ref().and_then(|o| o.metadata.uid.as_deref());
        match patch_status::<Organization>(ctx, ns, ns, uid, status).await {
            Ok(rv) => {
                if let Some(written) = w
                    .org
                    .as_ref()
                    .and_then(|o| own_status::Written::new(o, status, rv.as_deref()))
                {
                    ctx.own_status.wrote(ns, written);
                }
                moved.orgs.push((ns.to_string(), rv))
            }
            Err(e) => failed.note(w, None, e),
        }
    }
    for e in &plan.events {
        publish(ctx, w, e).await;
    }
    for t in &plan.remove_finalizer {
        // A finalizer stays until what it guards is cleaned up.
        let held = match t {
            Target::Project(p) => failed.projects.contains_key(p),
            _ => failed.org_failed || !failed.projects.is_empty(),
        };
        if held {
            continue;
        }
        if let Err(e) = set_finalizer(ctx, w, t, false).await {
            failed.note(w, None, e);
        }
    }
    await_own_writes(ctx, w, moved).await;
    match failed.first {
        None => Ok(()),
        Some(e) if failed.count == 1 => Err(e),
        Some(e) => Err(Error::Several {
            count: failed.count,
            first: Box::new(e),
        }),
    }
}

/// How long a reconcile waits for the caches to show its own status writes.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// The statuses a reconcile wrote, with the resourceVersion each write answered.
#[derive(Default)]
pub(super) struct Moved {
    pub members: Vec<(String, Option<String>)>,
    pub projects: Vec<(String, Option<String>)>,
    /// The Organization's own: the next plan reads its conditions (when MFA became required
    /// is the MfaRequired condition's time, else now). Planned from a cache without it, a
    /// cold start wrote every member of an MFA organization twice, the grace period moved a
    /// few seconds later (one organization of 20 in three of six cold starts measured). Past
    /// `CATCH_UP`, `own_status` shows the next plan the status written.
    pub orgs: Vec<(String, Option<String>)>,
}

/// Of a reconcile's status writes, those the caches must show before the next plan, each
/// with the version it was planned from.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Pending<'a> {
    pub members: Vec<(&'a str, Option<String>)>,
    pub projects: Vec<(&'a str, Option<String>)>,
    pub orgs: Vec<(&'a str, Option<String>)>,
}

pub(super) fn pending<'a>(w: &World, moved: &'a Moved) -> Pending<'a> {
    let rv = |m: &kube::core::ObjectMeta| m.resource_version.clone();
    let versions = |metas: Vec<&kube::core::ObjectMeta>| {
        metas
            .into_iter()
            .filter_map(|m| Some((m.name.clone()?, rv(m))))
            .collect::<std::collections::HashMap<String, Option<String>>>()
    };
    let members = versions(w.memberships.iter().map(|m| &m.metadata).collect());
    let projects = versions(w.projects.iter().map(|p| &p.metadata).collect());
    let orgs = versions(w.org.iter().map(|o| &o.metadata).collect());
    Pending {
        members: awaited(&moved.members, |n| members.get(n).cloned()),
        projects: awaited(&moved.projects, |n| projects.get(n).cloned()),
        orgs: awaited(&moved.orgs, |n| orgs.get(n).cloned()),
    }
}

/// Objects written whose version the server moved past the one planned from: a write the
/// server found nothing to change in, a failed one, or one whose object is gone has nothing
/// for the cache to show, and waiting for it cost the whole `CATCH_UP` (an organization idle
/// for 2 s while 8 are reconciled at once).
pub(super) fn awaited(
    written: &[(String, Option<String>)],
    planned_from: impl Fn(&str) -> Option<Option<String>>,
) -> Vec<(&str, Option<String>)> {
    written
        .iter()
        .filter_map(|(name, after)| {
            let before = planned_from(name)?;
            (after.is_some() && *after != before).then_some((name.as_str(), before))
        })
        .collect()
}

/// Waits (at most `CATCH_UP`) until the caches have moved past the state this plan was made
/// from, for every object whose status it changed: the next reconcile of the organization (the
/// RoleBindings and namespaces just written trigger one at once) then plans from them, instead
/// of writing the same statuses again from a cache a few milliseconds behind.
async fn await_own_writes(ctx: &Context, w: &World, moved: Moved) {
    let ns = w.namespace.as_str();
    let rv = |m: &kube::core::ObjectMeta| m.resource_version.clone();
    let mut pending = pending(w, &moved);
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        // Gone from the cache, or at another version than planned from: caught up.
        pending.members.retain(|(n, old)| {
            ctx.stores
                .memberships
                .resource_version(ns, n)
                .is_some_and(|v| v == *old)
        });
        pending.projects.retain(|(n, old)| {
            ctx.stores
                .projects
                .get(ns, n)
                .is_some_and(|p| rv(&p.metadata) == *old)
        });
        pending.orgs.retain(|(n, old)| {
            ctx.stores
                .orgs
                .get(ns, n)
                .is_some_and(|o| rv(&o.metadata) == *old)
        });
        if (pending.members.is_empty() && pending.projects.is_empty() && pending.orgs.is_empty())
            || tokio::time::Instant::now() >= deadline
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Status writes of one reconcile in flight at once.
const WRITES_IN_FLIGHT: usize = 8;

/// Runs the writes of one step (independent of each other; the steps' order is what matters)
/// `WRITES_IN_FLIGHT` at a time; results in the items' order. One by one, an organization's
/// finalizers, namespaces and bindings were 50 round trips in a row before its statuses.
/// The futures are made first: a step has tens of writes (statuses, thousands, are made as
/// slots free: `patch_statuses`).
async fn at_once<T, Fut>(writes: Vec<(T, Fut)>) -> Vec<(T, Result<()>)>
where
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut out = Vec::with_capacity(writes.len());
    for (x, f) in writes {
        if pending.len() >= WRITES_IN_FLIGHT
            && let Some(r) = pending.next().await
        {
            out.push(r);
        }
        pending.push_back(async move { (x, f.await) });
    }
    while let Some(r) = pending.next().await {
        out.push(r);
    }
    out
}

/// Writes statuses `WRITES_IN_FLIGHT` at a time; results in the statuses' order. Each
/// write is made when a slot frees, not all first: a write in waiting is a few KiB of future,
/// and an organization of thousands would hold them all at once.
async fn patch_statuses<K, S>(
    ctx: &Context,
    ns: &str,
    statuses: &[(String, S)],
    uids: &HashMap<&str, &str>,
) -> Vec<Result<Option<String>>>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut out = Vec::with_capacity(statuses.len());
    for (name, status) in statuses {
        if pending.len() >= WRITES_IN_FLIGHT
            && let Some(r) = pending.next().await
        {
            out.push(r);
        }
        let uid = uids.get(name.as_str()).copied();
        pending.push_back(patch_status::<K>(ctx, ns, name, uid, status));
    }
    while let Some(r) = pending.next().await {
        out.push(r);
    }
    out
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

async fn apply_binding(ctx: &Context, rb: &RoleBinding, ssa: &PatchParams) -> Result<()> {
    let (rb_ns, name) = key(rb);
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &rb_ns)
        .patch(&name, ssa, &Patch::Apply(rb))
        .await
        .map(drop)
        .map_err(Error::api(format!("apply of RoleBinding {rb_ns}/{name}")))
}

/// The project whose workload namespace `ns` is.
fn namespace_project(w: &World, ns: &str) -> Option<String> {
    w.namespaces
        .get(ns)
        .and_then(|n| project_of(&n.metadata).map(str::to_string))
}

/// The planned project statuses, with `Ready=False` (and the failure) for projects whose
/// writes failed in this reconcile.
fn project_statuses(
    w: &World,
    plan: &Plan,
    failed: &BTreeMap<String, String>,
) -> Vec<(String, crate::api::ProjectStatus)> {
    let mut out: BTreeMap<String, crate::api::ProjectStatus> =
        plan.project_status.iter().cloned().collect();
    for (project, why) in failed {
        let Some(p) = w.projects.iter().find(|p| p.name_any() == *project) else {
            continue;
        };
        let status = out
            .entry(project.clone())
            .or_insert_with(|| p.status.clone().unwrap_or_default());
        let reason = why.split(':').next().unwrap_or("WriteFailed").to_string();
        let three = condition::kstatus(
            &status.conditions,
            &condition::Health::reconciling(&reason, why.clone()),
            p.metadata.generation,
            w.now,
        );
        condition::set_kstatus(&mut status.conditions, three);
    }
    out.into_iter().collect()
}

async fn identity(ctx: &Context, w: &World, plan: &Plan) -> Result<()> {
    let Some(id) = &ctx.config.identity else {
        return Ok(());
    };
    let ns = w.namespace.as_str();
    let now = u64::try_from(w.now.as_second()).unwrap_or(0);
    let ttl = w
        .org
        .as_ref()
        .map(|o| o.spec.security.invitation_ttl())
        .unwrap_or_else(|| crate::api::SecurityPolicy::default().invitation_ttl())
        .as_secs();
    let mut first_error = Ok(());
    // First invitations, announced when all are out: a bulk import's are one Event on the
    // Organization (as its first grants are: `status::statuses`); a few get one Event each.
    let mut invited: Vec<(String, PlannedEvent)> = Vec::new();
    // By name (a bulk import invites every member: a scan each was quadratic).
    let mut members: std::collections::HashMap<String, &Membership> =
        std::collections::HashMap::new();
    for m in &w.memberships {
        members.entry(m.name_any()).or_insert(m);
    }
    for action in &plan.identity {
        // Identity's writes go through its own client (every replica serves logins), not the
        // reconciler's guarded one: each action is checked against the lease right before it
        // runs, so a replica that no longer leads starts none (the third red-team round found
        // them sent). Each is idempotent (nonces, compare-and-swap, a conditional delete).
        if !ctx.config.leadership.is_leader() {
            tracing::warn!(namespace = %ns, "lease lost: identity actions not started");
            first_error = Ok(());
            break;
        }
        let mut announce = true;
        let (what, membership, outcome) = match action {
            IdentityAction::Invite {
                membership,
                nonce,
                scope,
                readers,
                ..
            } => {
                let Some(m) = members.get(membership).copied() else {
                    continue;
                };
                let issue = crate::identity::service::Issue {
                    ttl_seconds: ttl,
                    nonce: nonce.as_deref(),
                    scope,
                    readers,
                    now,
                };
                let r = id.invite(m, &issue).await;
                // None: accepted meanwhile, nothing was sent to announce.
                announce = matches!(r, Ok(Some(_)));
                ("sending the invitation", membership.clone(), r.map(|_| ()))
            }
            IdentityAction::Unlock {
                membership,
                email,
                nonce,
            } => (
                "unlocking",
                membership.clone(),
                id.unlock(ns, email, nonce).await,
            ),
            IdentityAction::ResetMfa {
                membership,
                email,
                nonce,
            } => (
                "resetting MFA",
                membership.clone(),
                id.reset_mfa(ns, email, nonce).await,
            ),
            IdentityAction::Forget { email, keep_joined } => (
                "removing credentials",
                email.clone(),
                id.forget(
                    ns,
                    email,
                    w.credentials
                        .get(email)
                        .and_then(|r| r.membership_uid.as_deref()),
                    *keep_joined,
                )
                .await,
            ),
        };
        if outcome.is_ok()
            && announce
            && let Some(e) = super::credentials::event(action)
        {
            match action {
                IdentityAction::Invite {
                    rotated: false,
                    nonce: None,
                    membership,
                    ..
                } => invited.push((membership.clone(), e)),
                _ => publish(ctx, w, &e).await,
            }
        }
        if let Err(source) = outcome {
            tracing::warn!(namespace = ns, %membership, reason = source.reason(), error = %source, "{what} failed");
            if first_error.is_ok() {
                first_error = Err(Error::Identity {
                    action: what,
                    membership,
                    source,
                });
            }
        }
    }
    match (invited.len() > super::status::BULK_MEMBERS, &w.org) {
        (true, Some(o)) => {
            let names: Vec<String> = invited.into_iter().map(|(m, _)| m).collect();
            let e = PlannedEvent {
                target: Target::Organization(o.name_any()),
                warning: false,
                reason: "MembersInvited",
                note: super::status::members_note("members invited", &names),
            };
            publish(ctx, w, &e).await;
        }
        _ => {
            for (_, e) in &invited {
                publish(ctx, w, e).await;
            }
        }
    }
    first_error
}

fn ignore_not_found<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The UIDs of `objects` by name: each status names the incarnation it was planned for.
fn uids<'a, K: Resource + 'a>(
    objects: impl IntoIterator<Item = &'a K>,
) -> HashMap<&'a str, &'a str> {
    objects
        .into_iter()
        .filter_map(|o| Some((o.meta().name.as_deref()?, o.meta().uid.as_deref()?)))
        .collect()
}

/// The API server's answer to a status naming an incarnation the object no longer is: gone
/// (409, "uid mismatch") or deleted and made again under its name (422, metadata.uid is
/// immutable). Nothing to write: the new one's own reconcile plans its status.
fn another_incarnation(s: &kube::core::Status) -> bool {
    (s.code == 409 && s.message.contains("uid mismatch"))
        || (s.code == 422 && s.message.contains("metadata.uid"))
}

/// Writes `status` by server-side apply, with `uid` (when known) as a precondition: planned
/// between a Membership's deletion and its namesake's creation, a status without it landed on
/// the new member, and the next plan read the predecessor's access list, transition times and
/// recorded grants as the new member's own (red team 32). The object's resourceVersion after
/// the write (None when it is gone, or the server sent none): unchanged when the server found
/// nothing to change.
async fn patch_status<K>(
    ctx: &Context,
    ns: &str,
    name: &str,
    uid: Option<&str>,
    status: &impl Serialize,
) -> Result<Option<String>>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut body =
        json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    if let Some(uid) = uid {
        body["metadata"] = json!({ "uid": uid });
    }
    let result = Api::<K>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await;
    // An object deleted since it was observed has no status to write.
    match result {
        Ok(o) => Ok(o.meta().resource_version.clone()),
        Err(kube::Error::Api(s)) if s.code == 404 || another_incarnation(&s) => Ok(None),
        Err(e) => Err(Error::api(format!(
            "status update of {} {ns}/{name}",
            K::kind(&())
        ))(e)),
    }
}

/// Adds or removes roster's finalizer with a merge patch guarded by resourceVersion: a
/// concurrent change makes it fail with 409 and the reconcile is retried on fresh data.
async fn set_finalizer(ctx: &Context, w: &World, t: &Target, present: bool) -> Result<()> {
    let meta = match t {
        Target::Organization(n) => w
            .org
            .as_ref()
            .filter(|o| o.name_any() == *n)
            .map(|o| &o.metadata),
        Target::Project(n) => w
            .projects
            .iter()
            .find(|p| p.name_any() == *n)
            .map(|p| &p.metadata),
        _ => None,
    };
    let Some(meta) = meta else { return Ok(()) };
    let mut finalizers: Vec<String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|f| f.as_str() != labels::FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(labels::FINALIZER.to_string());
    }
    let patch = json!({ "metadata": { "finalizers": finalizers, "resourceVersion": meta.resource_version } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let ns = w.namespace.as_str();
    let action = format!(
        "{} finalizer on {t:?}",
        if present {
            "adding the"
        } else {
            "removing the"
        }
    );
    let result = match t {
        Target::Organization(n) => Api::<Organization>::namespaced(ctx.client.clone(), ns)
            .patch(n, &params, &Patch::Merge(&patch))
            .await
            .map(drop),
        Target::Project(n) => Api::<Project>::namespaced(ctx.client.clone(), ns)
            .patch(n, &params, &Patch::Merge(&patch))
            .await
            .map(drop),
        _ => Ok(()),
    };
    ignore_not_found(result).map_err(Error::api(action))
}

/// When a reconcile fails, say so where users look: a Warning Event and `Ready=False` on the
/// Organization, both carrying the error's reason. Best effort: the API server may be the
/// problem. The next successful reconcile flips Ready back.
pub async fn report_failure(ctx: &Context, w: &World, err: &Error) {
    let Some(org) = w.org.as_ref() else { return };
    let event = PlannedEvent {
        target: Target::Organization(org.name_any()),
        warning: true,
        reason: err.reason(),
        note: err.to_string(),
    };
    publish(ctx, w, &event).await;
    let mut status = org.status.clone().unwrap_or_default();
    // Refusals (RBAC, validation, a namespace someone else took) stay until a person acts;
    // anything else is retried with backoff.
    let health = if err.needs_a_person() {
        condition::Health::stalled(err.reason(), err.to_string())
    } else {
        condition::Health::reconciling(err.reason(), err.to_string())
    };
    let three = condition::kstatus(&status.conditions, &health, org.metadata.generation, w.now);
    condition::set_kstatus(&mut status.conditions, three);
    super::status::record_mfa_required(
        &mut status.conditions,
        org.spec.security.mfa.required,
        org.metadata.generation,
        w.now,
    );
    let uid = org.metadata.uid.as_deref();
    match patch_status::<Organization>(ctx, &w.namespace, &org.name_any(), uid, &status).await {
        Ok(rv) => {
            if let Some(written) = own_status::Written::new(org, &status, rv.as_deref()) {
                ctx.own_status.wrote(&w.namespace, written);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "could not record the failure in the Organization's status");
        }
    }
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
/// The Event's action, which tells kube's recorder one Event from another: it folds an Event
/// into an earlier one of the same object, reason and action as a series, keeping the earlier
/// note. With one action for all, the second held change's Event (its fingerprint), or a
/// second bulk import's, showed the first's note. The same note is still one series.
fn event_action(note: &str) -> String {
    // The whole digest (74 characters of the 128 an action may have): with 32 bits, an Admin
    // who shapes a note (the names of new Memberships) could match an earlier one's and have
    // the new Event folded into it, unseen (red team 28).
    let digest = ring::digest::digest(&ring::digest::SHA256, note.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("Reconcile-{hex}")
}

async fn publish(ctx: &Context, w: &World, e: &super::plan::PlannedEvent) {
    let reference = match &e.target {
        Target::Organization(n) => w
            .org
            .iter()
            .find(|o| o.name_any() == *n)
            .map(|o| o.object_ref(&())),
        Target::Project(n) => w
            .projects
            .iter()
            .find(|p| p.name_any() == *n)
            .map(|p| p.object_ref(&())),
        Target::Membership(n) => w
            .memberships
            .iter()
            .find(|m| m.name_any() == *n)
            .map(|m| m.object_ref(&())),
    };
    let Some(reference) = reference else { return };
    let event = Event {
        type_: if e.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: e.reason.to_string(),
        note: Some(e.note.clone()),
        action: event_action(&e.note),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(reason = e.reason, error = %err, "could not record an Event");
    }
}
