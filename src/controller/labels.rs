//! How roster recognises what it manages, from the names in `api::contract`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use crate::api::contract::{
    ADOPT_ANNOTATION as ADOPT, BOOTSTRAP_LABEL as BOOTSTRAP, FINALIZER, MANAGED_BY, MANAGER,
    NAMESPACE_ORIGIN_ANNOTATION, ORGANIZATION_LABEL as ORGANIZATION, ORIGIN_ADOPTED,
    ORIGIN_CREATED, PROJECT_LABEL as PROJECT, managed_labels as managed, managed_selector,
};

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

/// Only a namespace roster created (and says so) may be deleted with its Project; one without
/// the mark — handed over, or from before the mark existed — is handed back instead.
pub fn created_by_roster(ns: &Namespace) -> bool {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NAMESPACE_ORIGIN_ANNOTATION))
        .is_some_and(|v| v == ORIGIN_CREATED)
}

/// A project namespace as roster writes it; `origin` is `ORIGIN_CREATED` or `ORIGIN_ADOPTED`.
pub fn namespace(name: &str, org: &str, project: &str, origin: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(managed(org, Some(project))),
            annotations: Some(
                [(NAMESPACE_ORIGIN_ANNOTATION.to_string(), origin.to_string())].into(),
            ),
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
