//! `apply()`: carries out a plan, in an order that never cuts access or leaves debris:
//! finalizers before children, deletions of stale bindings before their replacements (roleRef is
//! immutable), statuses after the objects they describe, finalizer removal last.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use super::credentials::IdentityAction;
use super::plan::{Plan, PlannedEvent, Target, World};
use super::{Context, Error, FIELD_MANAGER, Result, labels::FINALIZER};
use crate::api::{Membership, Organization, Project};
use crate::condition::{self, READY};

pub async fn apply(ctx: &Context, w: &World, plan: &Plan) -> Result<()> {
    let c = &ctx.client;
    let ns = w.namespace.as_str();
    let ssa = PatchParams::apply(FIELD_MANAGER).force();

    for t in &plan.add_finalizer {
        set_finalizer(ctx, w, t, true).await?;
    }
    for n in &plan.namespaces {
        let name = n.name_any();
        Api::<Namespace>::all(c.clone())
            .patch(&name, &ssa, &Patch::Apply(n))
            .await
            .map_err(Error::api(format!("apply of namespace {name}")))?;
    }
    for (rb_ns, name) in &plan.delete_rolebindings {
        ignore_not_found(
            Api::<RoleBinding>::namespaced(c.clone(), rb_ns)
                .delete(name, &DeleteParams::default())
                .await,
        )
        .map_err(Error::api(format!(
            "deletion of RoleBinding {rb_ns}/{name}"
        )))?;
    }
    for rb in &plan.rolebindings {
        let (rb_ns, name) = (
            rb.metadata.namespace.clone().unwrap_or_default(),
            rb.name_any(),
        );
        Api::<RoleBinding>::namespaced(c.clone(), &rb_ns)
            .patch(&name, &ssa, &Patch::Apply(rb))
            .await
            .map_err(Error::api(format!("apply of RoleBinding {rb_ns}/{name}")))?;
    }
    for n in &plan.delete_namespaces {
        ignore_not_found(
            Api::<Namespace>::all(c.clone())
                .delete(n, &DeleteParams::default())
                .await,
        )
        .map_err(Error::api(format!("deletion of namespace {n}")))?;
    }
    for m in &plan.create_memberships {
        let created = Api::<Membership>::namespaced(c.clone(), ns)
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                m,
            )
            .await;
        match created {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            other => {
                other.map_err(Error::api(format!(
                    "creation of Membership {}",
                    m.name_any()
                )))?;
            }
        }
    }

    for name in &plan.delete_memberships {
        ignore_not_found(
            Api::<Membership>::namespaced(c.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await,
        )
        .map_err(Error::api(format!(
            "deletion of superseded bootstrap Membership {name}"
        )))?;
    }

    // An invitation that cannot go out (SMTP down) must not hold back statuses: the first
    // identity failure is returned after them.
    let identity_result = identity(ctx, w, plan).await;

    if let Some(status) = &plan.org_status {
        patch_status::<Organization>(ctx, ns, ns, status).await?;
    }
    for (name, status) in &plan.stray_org_status {
        patch_status::<Organization>(ctx, ns, name, status).await?;
    }
    for (name, status) in &plan.project_status {
        patch_status::<Project>(ctx, ns, name, status).await?;
    }
    for (name, status) in &plan.membership_status {
        patch_status::<Membership>(ctx, ns, name, status).await?;
    }
    for e in &plan.events {
        publish(ctx, w, e).await;
    }
    for t in &plan.remove_finalizer {
        set_finalizer(ctx, w, t, false).await?;
    }
    identity_result
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
        .and_then(|o| {
            crate::api::parse_duration(
                "spec.security.invitationTTL",
                &o.spec.security.invitation_ttl,
            )
            .ok()
        })
        .map_or(7 * 24 * 3600, |d| d.as_secs());
    let mut first_error = Ok(());
    for action in &plan.identity {
        let (what, membership, outcome) = match action {
            IdentityAction::Invite { membership, nonce } => {
                let Some(m) = w.memberships.iter().find(|m| &m.name_any() == membership) else {
                    continue;
                };
                let r = id.invite(m, ttl, nonce.as_deref(), now).await.map(|_| ());
                ("sending the invitation", membership.clone(), r)
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
            IdentityAction::Forget { email } => (
                "removing credentials",
                email.clone(),
                id.forget(ns, email).await,
            ),
        };
        if outcome.is_ok()
            && let Some(e) = super::credentials::event(action)
        {
            publish(ctx, w, &e).await;
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
    first_error
}

fn ignore_not_found<T>(r: kube::Result<T>) -> kube::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn patch_status<K>(ctx: &Context, ns: &str, name: &str, status: &impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let body = json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    let result = Api::<K>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await;
    // An object deleted since it was observed has no status to write.
    ignore_not_found(result).map_err(Error::api(format!(
        "status update of {} {ns}/{name}",
        K::kind(&())
    )))
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
        .filter(|f| f.as_str() != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_string());
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
    let ready = condition::make(
        &status.conditions,
        READY,
        false,
        err.reason(),
        err.to_string(),
        org.metadata.generation,
        w.now,
    );
    status.conditions.retain(|c| c.type_ != READY);
    status.conditions.insert(0, ready);
    if let Err(e) = patch_status::<Organization>(ctx, &w.namespace, &org.name_any(), &status).await
    {
        tracing::debug!(error = %e, "could not record the failure in the Organization's status");
    }
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
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
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(reason = e.reason, error = %err, "could not record an Event");
    }
}
