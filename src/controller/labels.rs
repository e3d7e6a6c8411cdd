//! The labels, annotations and finalizer by which roster recognises what it manages.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "roster";
pub const ORGANIZATION: &str = "roster.dev/organization";
pub const PROJECT: &str = "roster.dev/project";
pub use crate::api::BOOTSTRAP_LABEL as BOOTSTRAP;
/// On a namespace that existed before its Project: `<organization>/<project>` hands it to roster.
pub const ADOPT: &str = "roster.dev/adopt";
/// On Organizations and Projects: their objects outside their own namespace are cleaned up first.
pub const FINALIZER: &str = "roster.dev/cleanup";

pub fn managed(org: &str, project: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (ORGANIZATION.to_string(), org.to_string()),
    ]);
    if let Some(p) = project {
        l.insert(PROJECT.to_string(), p.to_string());
    }
    l
}

/// The label selector of everything roster manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

pub fn owned_by(labels: Option<&BTreeMap<String, String>>, org: &str, project: &str) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    get(MANAGED_BY) == Some(MANAGER)
        && get(ORGANIZATION) == Some(org)
        && get(PROJECT) == Some(project)
}

pub fn adoption_requested(ns: &Namespace, org: &str, project: &str) -> bool {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ADOPT))
        .is_some_and(|v| *v == format!("{org}/{project}"))
}

pub fn namespace(name: &str, org: &str, project: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(managed(org, Some(project))),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The name of a bootstrap Membership for an e-mail: `owner-` and its local part as a DNS label,
/// made unique among `taken`. The prefix keeps it clear of the names people give Memberships.
pub fn membership_name_for(email: &str, taken: &BTreeSet<String>) -> String {
    let local = format!("owner-{}", email.split('@').next().unwrap_or(email));
    let mut base: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base = base
        .trim_matches('-')
        .chars()
        .take(40)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string();
    if base.is_empty() {
        base = "owner".into();
    }
    if !taken.contains(&base) {
        return base;
    }
    // FNV-1a of the whole address: stable across runs, distinct for distinct addresses.
    let hash = email.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut n = 0u32;
    loop {
        let candidate = format!(
            "{base}-{:06x}",
            (hash.wrapping_add(u64::from(n))) & 0xff_ffff
        );
        if !taken.contains(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_names_are_dns_labels_and_unique() {
        let none = BTreeSet::new();
        assert_eq!(
            membership_name_for("alice@acme.example", &none),
            "owner-alice"
        );
        assert_eq!(
            membership_name_for("Jean.Luc+ops@x.example", &none),
            "owner-jean-luc-ops"
        );
        assert_eq!(membership_name_for("@x.example", &none), "owner");
        let taken = BTreeSet::from(["owner-alice".to_string()]);
        let other = membership_name_for("alice@acme.example", &taken);
        assert!(
            other.starts_with("owner-alice-") && other.len() == "owner-alice-".len() + 6,
            "{other}"
        );
        assert_ne!(other, membership_name_for("alice@other.example", &taken));
    }
}
