//! Reviewing a change before it reaches the cluster: `roster plan` and `roster diff`.
//!
//! Offline, with the very functions the cluster runs: the CRD schemas and CEL rules `roster
//! crds` generates (kube's client-side CEL), the webhook's `validate()`, and the controller's
//! `plan()` — so the access table a reviewer reads is what the controller will converge to, and
//! a violation reads as the API server or the webhook would word it.

pub mod diff;
pub mod load;
pub mod render;
pub mod report;
pub mod sample;
pub mod schema;
pub mod tree;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::api::{Membership, Organization, Project};
use crate::controller::Settings;
use crate::webhook::validate::Policy;
pub use tree::{Caller, Tree, Violation};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {what} from the cluster: {source}")]
    Live {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("nothing to read: give -f PATH (a file, a directory, or - for standard input)")]
    NoInput,
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Read { .. } => "ReadFailed",
            Error::Live { .. } => "ApiUnavailable",
            Error::NoInput => "InvalidArgument",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a tree is judged.
#[derive(Clone, Debug)]
pub struct Options {
    /// For objects without `metadata.namespace` (as `kubectl apply -n`).
    pub namespace: Option<String>,
    pub caller: Caller,
    pub policy: Policy,
    pub settings: Settings,
    pub now: Timestamp,
}

impl Options {
    pub fn new(now: Timestamp) -> Options {
        Options {
            namespace: None,
            caller: Caller::trusted(),
            policy: Policy::default(),
            settings: Settings::default(),
            now: Timestamp::from_second(now.as_second()).unwrap_or(now),
        }
    }
}

/// Progress on standard error for large trees (a pipeline's log shows it is not stuck).
fn progress(total: usize, what: &str) {
    if total >= 1000 {
        eprintln!("roster: {what}");
    }
}

/// Reads and types a tree of manifests.
pub fn read(
    paths: &[PathBuf],
    opts: &Options,
    schemas: &schema::Schemas,
) -> Result<(Tree, Vec<Violation>)> {
    if paths.is_empty() {
        return Err(Error::NoInput);
    }
    let loaded = load::load(paths)?;
    let n = loaded.documents.len();
    progress(n, &format!("read {n} documents"));
    let (tree, violations) = Tree::build(&loaded, opts.namespace.as_deref(), schemas);
    progress(
        n,
        &format!("checked {n} documents against the schemas and CEL rules"),
    );
    Ok((tree, violations))
}

/// `roster plan`: every violation of `head` (schema, CEL, webhook — against `base` when given),
/// and the access the controller would converge to.
pub fn plan(
    head: &Tree,
    base: Option<&Tree>,
    mut violations: Vec<Violation>,
    opts: &Options,
) -> (report::Report, Vec<Violation>) {
    violations.extend(tree::admission(
        head,
        base,
        &opts.caller,
        &opts.policy,
        opts.now,
    ));
    let objects = head.memberships.len() + head.projects.len() + head.organizations.len();
    progress(
        objects,
        &format!("admission checks done for {objects} objects"),
    );
    let report = report::report(head, &opts.settings, opts.now);
    progress(
        objects,
        &format!("planned {} organizations", report.organizations.len()),
    );
    (report, violations)
}

/// The head of a change against a base read from a cluster: objects that already exist keep
/// what the cluster knows of them (uid, creation time, status: who enrolled in MFA, since when
/// MFA is required), so that grace periods are counted from the real dates.
pub fn inherit(head: &mut Tree, base: &Tree) {
    fn carry<T: kube::Resource<DynamicType = ()> + Clone>(
        head: &mut [tree::Item<T>],
        base: &[tree::Item<T>],
        status: impl Fn(&mut T, &T),
    ) {
        let index: std::collections::HashMap<(Option<String>, Option<String>), &T> = base
            .iter()
            .map(|i| {
                (
                    (
                        i.object.meta().namespace.clone(),
                        i.object.meta().name.clone(),
                    ),
                    &i.object,
                )
            })
            .collect();
        for h in head.iter_mut() {
            let key = (
                h.object.meta().namespace.clone(),
                h.object.meta().name.clone(),
            );
            if let Some(b) = index.get(&key) {
                let bm = b.meta().clone();
                let m = h.object.meta_mut();
                m.uid = bm.uid;
                m.creation_timestamp = bm.creation_timestamp;
                m.generation = bm.generation;
                status(&mut h.object, b);
            }
        }
    }
    carry(
        &mut head.organizations,
        &base.organizations,
        |h: &mut Organization, b| h.status = b.status.clone(),
    );
    carry(&mut head.projects, &base.projects, |h: &mut Project, b| {
        h.status = b.status.clone()
    });
    carry(
        &mut head.memberships,
        &base.memberships,
        |h: &mut Membership, b| h.status = b.status.clone(),
    );
    // Namespaces the cluster has are observed, whoever declares them.
    for n in &base.namespaces {
        if !head
            .namespaces
            .iter()
            .any(|h| h.object.name_any() == n.object.name_any())
        {
            head.namespaces.push(n.clone());
        }
    }
}

/// The cluster's roster objects, and the namespaces their projects name (to tell which exist
/// and whose they are).
pub async fn live(client: &Client) -> Result<Tree> {
    live_in(client, None).await
}

/// The organizations living in `homes`, one namespace at a time: what an organization's Admin
/// may list (a cluster-wide list needs a platform admin), and no more than a change touches.
pub async fn live_homes(client: &Client, homes: &[String]) -> Result<Tree> {
    let mut all = Tree::default();
    for home in homes {
        let t = live_in(client, Some(home)).await?;
        all.organizations.extend(t.organizations);
        all.projects.extend(t.projects);
        all.memberships.extend(t.memberships);
        for n in t.namespaces {
            if !all
                .namespaces
                .iter()
                .any(|x| x.object.name_any() == n.object.name_any())
            {
                all.namespaces.push(n);
            }
        }
    }
    Ok(all)
}

/// The same, for one organization's namespace (what an organization's Admin may list).
pub async fn live_in(client: &Client, namespace: Option<&str>) -> Result<Tree> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let lp = ListParams::default();
    let failed = |what: &'static str| move |source| Error::Live { what, source };
    let orgs = api::<Organization>(client, namespace)
        .list(&lp)
        .await
        .map_err(failed("Organizations"))?;
    let projects = api::<Project>(client, namespace)
        .list(&lp)
        .await
        .map_err(failed("Projects"))?;
    let memberships = api::<Membership>(client, namespace)
        .list(&lp)
        .await
        .map_err(failed("Memberships"))?;
    let wanted: std::collections::BTreeSet<String> = projects
        .items
        .iter()
        .map(|p| crate::controller::plan::project_namespace(&p.namespace().unwrap_or_default(), p))
        .collect();
    let mut namespaces = Vec::new();
    let ns_api = Api::<Namespace>::all(client.clone());
    for name in &wanted {
        match ns_api.get_opt(name).await {
            Ok(Some(n)) => namespaces.push(tree::Item {
                source: None,
                object: n,
            }),
            Ok(None) => {}
            // A reviewer who may not read namespaces still gets the rest.
            Err(kube::Error::Api(s)) if s.code == 403 => {}
            Err(source) => {
                return Err(Error::Live {
                    what: "Namespaces",
                    source,
                });
            }
        }
    }
    let item = |o| tree::Item {
        source: None,
        object: o,
    };
    Ok(Tree {
        organizations: orgs.items.into_iter().map(item).collect(),
        projects: projects
            .items
            .into_iter()
            .map(|o| tree::Item {
                source: None,
                object: o,
            })
            .collect(),
        memberships: memberships
            .items
            .into_iter()
            .map(|o| tree::Item {
                source: None,
                object: o,
            })
            .collect(),
        namespaces,
        others: 0,
    })
}
