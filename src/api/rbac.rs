//! The ClusterRoles roster binds in an organization's home namespace (RoleBindings
//! `roster-owner`, `roster-admins`, `roster-members`). Kubernetes RBAC gives the coarse right;
//! roster's admission webhook applies the finer permission matrix on top.
//!
//! None of them grants Secrets: a pending invitation link (Secret
//! `roster-invitation-<member>-<link id>`) is a bearer credential, readable only through the per-link Role and RoleBinding roster keeps
//! for it (exactly those who could create that Membership as it stands).
//!
//! Generated into `config/clusterroles.yaml` and the Helm chart by `roster crds --write`.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::ObjectMeta;

use super::contract::{MANAGED_BY, MANAGER};
use super::{EffectiveRole, GROUP};

/// The ClusterRole bound for each organization role.
pub const fn cluster_role(role: EffectiveRole) -> &'static str {
    match role {
        EffectiveRole::Owner => "roster-org-owner",
        EffectiveRole::Admin => "roster-org-admin",
        EffectiveRole::Member => "roster-org-member",
    }
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let owned = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: owned(groups),
        resources: owned(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// What each organization role may do through Kubernetes RBAC in the home namespace.
pub fn rules(role: EffectiveRole) -> Vec<PolicyRule> {
    // Who is bound to what, and what happened: everyone who manages members needs to see it.
    let oversight = [
        rule(&["rbac.authorization.k8s.io"], &["rolebindings"], &READ),
        rule(&["", "events.k8s.io"], &["events"], &READ),
    ];
    match role {
        EffectiveRole::Owner => [
            vec![
                rule(
                    &[GROUP],
                    &["organizations", "projects", "memberships"],
                    &WRITE,
                ),
                rule(
                    &[GROUP],
                    &[
                        "organizations/status",
                        "projects/status",
                        "memberships/status",
                    ],
                    &["get"],
                ),
            ],
            oversight.to_vec(),
        ]
        .concat(),
        EffectiveRole::Admin => [
            vec![
                rule(&[GROUP], &["organizations"], &READ),
                rule(&[GROUP], &["projects", "memberships"], &WRITE),
            ],
            oversight.to_vec(),
        ]
        .concat(),
        // Members see the organization and its projects, not the member list.
        EffectiveRole::Member => vec![rule(&[GROUP], &["organizations", "projects"], &READ)],
    }
}

pub fn cluster_roles() -> Vec<ClusterRole> {
    [
        EffectiveRole::Owner,
        EffectiveRole::Admin,
        EffectiveRole::Member,
    ]
    .into_iter()
    .map(|role| ClusterRole {
        metadata: ObjectMeta {
            name: Some(cluster_role(role).into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.to_string(), MANAGER.to_string()),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "roster".to_string(),
                ),
            ])),
            ..Default::default()
        },
        rules: Some(rules(role)),
        ..Default::default()
    })
    .collect()
}
