//! A tree of manifests as typed roster objects, checked the way the cluster would check them:
//! the CRD schema and CEL rules, then the webhook's `validate()` against an index of the tree.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::load::{Loaded, Source};
use super::schema::Schemas;
use crate::api::{Membership, Organization, Project};
use crate::controller::plan::project_namespace;
use crate::webhook::validate::{self, Decision, Index, Object, Op, Policy, Request};

/// An object of the tree and where it was declared.
#[derive(Clone, Debug)]
pub struct Item<T> {
    pub source: Option<Source>,
    pub object: T,
}

/// What the tree declares (or what the cluster holds, for `--live`).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub organizations: Vec<Item<Organization>>,
    pub projects: Vec<Item<Project>>,
    pub memberships: Vec<Item<Membership>>,
    /// Namespaces the tree declares (a declared project namespace is not roster's to create).
    pub namespaces: Vec<Item<Namespace>>,
    /// Objects of other kinds, left to the API server.
    pub others: usize,
}

/// A rule an object breaks, in the words of whoever enforces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// `file:line (document n)`, when the object came from a file.
    pub at: Option<String>,
    /// `Membership acme/bob`.
    pub object: String,
    /// A stable PascalCase name of the rule (`Schema`, `MalformedYaml`, the webhook's reasons).
    pub rule: String,
    pub message: String,
}

pub const API_VERSION: &str = "roster.dev/v1alpha1";

impl Tree {
    /// Types every document; what cannot be typed is a violation and left out of the tree.
    pub fn build(
        loaded: &Loaded,
        default_namespace: Option<&str>,
        schemas: &Schemas,
    ) -> (Tree, Vec<Violation>) {
        let mut tree = Tree::default();
        let mut bad: Vec<Violation> = loaded
            .unreadable
            .iter()
            .map(|u| Violation {
                at: Some(u.source.to_string()),
                object: "-".into(),
                rule: "MalformedYaml".into(),
                message: u.message.clone(),
            })
            .collect();
        let mut seen: HashMap<(String, String, String), Source> = HashMap::new();
        for d in &loaded.documents {
            let v = &d.value;
            let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
            let name = v
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let at = Some(d.source.to_string());
            let mut violation = |object: String, rule: &str, message: String| {
                bad.push(Violation {
                    at: at.clone(),
                    object,
                    rule: rule.into(),
                    message,
                })
            };
            if kind.is_empty() || api_version.is_empty() {
                violation(
                    "-".into(),
                    "MissingKind",
                    "Object 'Kind' is missing (every manifest needs apiVersion and kind)".into(),
                );
                continue;
            }
            let roster = api_version.starts_with("roster.dev/");
            let is_namespace = api_version == "v1" && kind == "Namespace";
            if !roster && !is_namespace {
                tree.others += 1;
                continue;
            }
            if name.is_empty() {
                violation(
                    format!("{kind} -"),
                    "Schema",
                    "metadata.name: Required value".into(),
                );
                continue;
            }
            if is_namespace {
                match serde_json::from_value::<Namespace>(v.clone()) {
                    Ok(n) => tree.namespaces.push(Item {
                        source: Some(d.source.clone()),
                        object: n,
                    }),
                    Err(e) => violation(format!("Namespace {name}"), "Schema", e.to_string()),
                }
                continue;
            }
            if api_version != API_VERSION
                || !matches!(kind, "Organization" | "Project" | "Membership")
            {
                violation(
                    format!("{kind} {name}"),
                    "UnknownKind",
                    format!(
                        "no matches for kind \"{kind}\" in version \"{api_version}\" (roster serves Organization, Project and Membership in {API_VERSION})"
                    ),
                );
                continue;
            }
            let namespace = v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .or(default_namespace);
            let Some(namespace) = namespace else {
                violation(
                    format!("{kind} {name}"),
                    "NoNamespace",
                    "no metadata.namespace: set one, or pass --namespace for objects without"
                        .into(),
                );
                continue;
            };
            // The API server's own checks of names, before anything is printed from them.
            if let Some(message) = name_error(name, namespace) {
                violation(format!("{kind} -"), "Schema", message);
                continue;
            }
            let object = format!("{kind} {namespace}/{name}");
            let key = (kind.to_string(), namespace.to_string(), name.to_string());
            if let Some(first) = seen.get(&key) {
                violation(
                    object,
                    "DeclaredTwice",
                    format!(
                        "declared twice: also at {first}; the later one would replace the earlier"
                    ),
                );
                continue;
            }
            seen.insert(key, d.source.clone());
            let mut errors = schemas.check(kind, v, None);
            // roster reads no object without a spec (the webhook refuses one).
            if v.get("spec").is_none() && errors.is_empty() {
                errors.push("spec: Required value".into());
            }
            if !errors.is_empty() {
                for e in errors {
                    violation(object.clone(), "Schema", e);
                }
                continue;
            }
            let source = Some(d.source.clone());
            let typed = match kind {
                "Organization" => typed::<Organization>(v, namespace)
                    .map(|o| tree.organizations.push(Item { source, object: o })),
                "Project" => typed::<Project>(v, namespace)
                    .map(|p| tree.projects.push(Item { source, object: p })),
                _ => typed::<Membership>(v, namespace)
                    .map(|m| tree.memberships.push(Item { source, object: m })),
            };
            if let Err(e) = typed {
                violation(object, "Schema", e);
            }
        }
        (tree, bad)
    }

    /// Only the objects of these organizations (and the namespaces their projects use): a live
    /// base is the whole cluster, a head in Git usually some organizations of it.
    pub fn restrict(&mut self, homes: &[String]) {
        let keep = |ns: Option<String>| ns.is_some_and(|n| homes.contains(&n));
        self.organizations.retain(|o| keep(o.object.namespace()));
        self.projects.retain(|p| keep(p.object.namespace()));
        self.memberships.retain(|m| keep(m.object.namespace()));
    }

    /// The namespaces holding roster objects (organizations' homes), sorted.
    pub fn homes(&self) -> Vec<String> {
        let mut homes: Vec<String> = self
            .organizations
            .iter()
            .filter_map(|o| o.object.namespace())
            .chain(self.projects.iter().filter_map(|p| p.object.namespace()))
            .chain(self.memberships.iter().filter_map(|m| m.object.namespace()))
            .collect();
        homes.sort();
        homes.dedup();
        homes
    }
}

/// `metadata.name` must be a DNS subdomain and `metadata.namespace` a DNS label, in the API
/// server's words; names are printed in tables and pull-request comments, so nothing else
/// gets that far.
fn name_error(name: &str, namespace: &str) -> Option<String> {
    fn label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }
    let quoted = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    if name.len() > 253 || !name.split('.').all(label) {
        return Some(format!(
            "metadata.name: Invalid value: {}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            quoted(name)
        ));
    }
    if !label(namespace) {
        return Some(format!(
            "metadata.namespace: Invalid value: {}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            quoted(namespace)
        ));
    }
    None
}

fn typed<T: DeserializeOwned + kube::Resource>(v: &Value, namespace: &str) -> Result<T, String> {
    let mut v = v.clone();
    // Status is the controller's; what a file says about it is not applied.
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    let mut t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    t.meta_mut().namespace = Some(namespace.to_string());
    Ok(t)
}

/// The tree as the webhook's `Index`: hash lookups, so that checking a large tree costs a
/// lookup per rule, never a scan.
#[derive(Default)]
pub struct TreeIndex {
    orgs: HashMap<String, Arc<Organization>>,
    by_email: HashMap<(String, String), Vec<Arc<Membership>>>,
    projects: HashMap<String, Vec<Arc<Project>>>,
    by_target: HashMap<String, Vec<Arc<Project>>>,
    /// The object being judged, left out as if it were not stored yet.
    without: Option<(&'static str, String, String)>,
}

impl TreeIndex {
    pub fn new(tree: &Tree) -> TreeIndex {
        let mut ix = TreeIndex::default();
        for o in &tree.organizations {
            ix.orgs.insert(
                o.object.namespace().unwrap_or_default(),
                Arc::new(o.object.clone()),
            );
        }
        for m in &tree.memberships {
            ix.by_email
                .entry((
                    m.object.namespace().unwrap_or_default(),
                    m.object.spec.email.clone(),
                ))
                .or_default()
                .push(Arc::new(m.object.clone()));
        }
        for p in &tree.projects {
            let ns = p.object.namespace().unwrap_or_default();
            let p_arc = Arc::new(p.object.clone());
            ix.by_target
                .entry(project_namespace(&ns, &p.object))
                .or_default()
                .push(p_arc.clone());
            ix.projects.entry(ns).or_default().push(p_arc);
        }
        ix
    }

    fn skip(&self, kind: &str, ns: Option<String>, name: String) -> bool {
        self.without
            .as_ref()
            .is_some_and(|(k, n, nm)| *k == kind && Some(n) == ns.as_ref() && *nm == name)
    }
}

impl Index for TreeIndex {
    fn organization(&self, namespace: &str) -> Option<Arc<Organization>> {
        self.orgs
            .get(namespace)
            .filter(|o| !self.skip("Organization", o.namespace(), o.name_any()))
            .cloned()
    }

    fn memberships_with_email(&self, namespace: &str, email: &str) -> Vec<Arc<Membership>> {
        self.by_email
            .get(&(namespace.to_string(), email.to_string()))
            .into_iter()
            .flatten()
            .filter(|m| !self.skip("Membership", m.namespace(), m.name_any()))
            .cloned()
            .collect()
    }

    fn projects(&self, namespace: &str) -> Vec<Arc<Project>> {
        self.projects
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|p| !self.skip("Project", p.namespace(), p.name_any()))
            .cloned()
            .collect()
    }

    fn projects_using_namespace(&self, namespace: &str) -> Vec<Arc<Project>> {
        self.by_target
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|p| !self.skip("Project", p.namespace(), p.name_any()))
            .cloned()
            .collect()
    }

    fn organizations_prefixing(&self, namespace: &str) -> Vec<String> {
        self.orgs
            .keys()
            .filter(|o| namespace.starts_with(&format!("{o}-")))
            .cloned()
            .collect()
    }
}

/// Who applies the tree: a trusted identity (platform admin, GitOps controller) or a person.
#[derive(Clone, Debug)]
pub struct Caller {
    pub username: String,
    pub groups: Vec<String>,
}

impl Caller {
    /// The default: a member of `system:masters`, as a GitOps controller usually is.
    pub fn trusted() -> Caller {
        Caller {
            username: "roster-plan".into(),
            groups: vec!["system:masters".into()],
        }
    }
}

/// One admission request to make: where the object came from, its kind, namespace, name, the
/// object after and before.
type Ask = (
    Option<Source>,
    &'static str,
    String,
    String,
    Option<Object>,
    Option<Object>,
);

/// One organization's objects: its Organization(s), Projects and Memberships.
pub type Home = (Vec<Organization>, Vec<Project>, Vec<Membership>);

/// Runs the webhook's `validate()` on every object of `head`. Without a base, everything is a
/// creation judged against the rest of the tree; with one (the state before the change: a Git
/// base or the live cluster) changed objects are updates, removed ones deletions, unchanged ones
/// are not requests at all, and each is judged against the base, as the webhook judges a
/// request against what is stored.
pub fn admission(
    head: &Tree,
    base: Option<&Tree>,
    caller: &Caller,
    policy: &Policy,
    now: Timestamp,
) -> Vec<Violation> {
    let mut index = TreeIndex::new(base.unwrap_or(head));
    let old_of = |kind: &str, ns: &str, name: &str| -> Option<Object> {
        let b = base?;
        let hit = |m: &kube::core::ObjectMeta| {
            m.namespace.as_deref() == Some(ns) && m.name.as_deref() == Some(name)
        };
        match kind {
            "Organization" => b
                .organizations
                .iter()
                .find(|i| hit(&i.object.metadata))
                .map(|i| Object::Organization(i.object.clone())),
            "Project" => b
                .projects
                .iter()
                .find(|i| hit(&i.object.metadata))
                .map(|i| Object::Project(i.object.clone())),
            _ => b
                .memberships
                .iter()
                .find(|i| hit(&i.object.metadata))
                .map(|i| Object::Membership(i.object.clone())),
        }
    };
    let mut requests: Vec<Ask> = Vec::new();
    let mut add = |source: &Option<Source>,
                   kind: &'static str,
                   meta: &kube::core::ObjectMeta,
                   new: Option<Object>| {
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let old = old_of(kind, &ns, &name);
        requests.push((source.clone(), kind, ns, name, new, old));
    };
    for o in &head.organizations {
        add(
            &o.source,
            "Organization",
            &o.object.metadata,
            Some(Object::Organization(o.object.clone())),
        );
    }
    for p in &head.projects {
        add(
            &p.source,
            "Project",
            &p.object.metadata,
            Some(Object::Project(p.object.clone())),
        );
    }
    for m in &head.memberships {
        add(
            &m.source,
            "Membership",
            &m.object.metadata,
            Some(Object::Membership(m.object.clone())),
        );
    }
    if let Some(b) = base {
        let in_head = |kind: &str, meta: &kube::core::ObjectMeta| {
            let same =
                |m: &kube::core::ObjectMeta| m.namespace == meta.namespace && m.name == meta.name;
            match kind {
                "Organization" => head.organizations.iter().any(|i| same(&i.object.metadata)),
                "Project" => head.projects.iter().any(|i| same(&i.object.metadata)),
                _ => head.memberships.iter().any(|i| same(&i.object.metadata)),
            }
        };
        for o in b
            .organizations
            .iter()
            .filter(|o| !in_head("Organization", &o.object.metadata))
        {
            add(&o.source, "Organization", &o.object.metadata, None);
        }
        for p in b
            .projects
            .iter()
            .filter(|p| !in_head("Project", &p.object.metadata))
        {
            add(&p.source, "Project", &p.object.metadata, None);
        }
        for m in b
            .memberships
            .iter()
            .filter(|m| !in_head("Membership", &m.object.metadata))
            // roster's own Membership for an owner who has none is roster's to create and
            // delete; a tree in Git never declares it.
            .filter(|m| !crate::access::is_bootstrap(&m.object))
        {
            add(&m.source, "Membership", &m.object.metadata, None);
        }
    }
    let mut out = Vec::new();
    for (source, kind, ns, name, new, old) in requests {
        let operation = match (&new, &old) {
            (Some(_), None) => Op::Create,
            (None, Some(_)) => Op::Delete,
            (Some(n), Some(o)) if same_desired(n, o) => continue,
            _ => Op::Update,
        };
        // An update keeps what the API server keeps: identity and status of the stored object.
        let new = match (new, &old) {
            (Some(n), Some(o)) => Some(carry_over(n, o)),
            (n, _) => n,
        };
        index.without = (base.is_none()).then(|| (kind, ns.clone(), name.clone()));
        let req = Request {
            operation,
            namespace: &ns,
            name: &name,
            object: new.as_ref(),
            old_object: old.as_ref(),
            username: &caller.username,
            groups: &caller.groups,
            now,
        };
        if let Decision::Deny { reason, message } = validate::validate(&req, &index, policy) {
            out.push(Violation {
                at: source.as_ref().map(Source::to_string),
                object: format!("{kind} {ns}/{name}"),
                rule: reason.into(),
                message: format!(
                    "admission webhook \"validate.roster.dev\" denied the request: {message}"
                ),
            });
        }
    }
    out
}

/// The same declaration: spec, labels and annotations (what `kubectl apply` would change).
fn same_desired(a: &Object, b: &Object) -> bool {
    fn parts<T: Serialize + kube::Resource>(o: &T, spec: Value) -> (Value, Value, Value) {
        let m = o.meta();
        (
            spec,
            serde_json::to_value(&m.labels).unwrap_or(Value::Null),
            serde_json::to_value(&m.annotations).unwrap_or(Value::Null),
        )
    }
    let of = |o: &Object| match o {
        Object::Organization(x) => parts(x, serde_json::to_value(&x.spec).unwrap_or(Value::Null)),
        Object::Project(x) => parts(x, serde_json::to_value(&x.spec).unwrap_or(Value::Null)),
        Object::Membership(x) => parts(x, serde_json::to_value(&x.spec).unwrap_or(Value::Null)),
    };
    of(a) == of(b)
}

fn carry_over(new: Object, old: &Object) -> Object {
    fn keep<T: kube::Resource>(n: &mut T, o: &T) {
        let (nm, om) = (n.meta_mut(), o.meta());
        nm.uid = om.uid.clone();
        nm.creation_timestamp = om.creation_timestamp.clone();
        nm.generation = om.generation;
    }
    match (new, old) {
        (Object::Organization(mut n), Object::Organization(o)) => {
            keep(&mut n, o);
            n.status = o.status.clone();
            Object::Organization(n)
        }
        (Object::Project(mut n), Object::Project(o)) => {
            keep(&mut n, o);
            n.status = o.status.clone();
            Object::Project(n)
        }
        (Object::Membership(mut n), Object::Membership(o)) => {
            keep(&mut n, o);
            n.status = o.status.clone();
            Object::Membership(n)
        }
        (n, _) => n,
    }
}

/// Objects of the tree by home namespace, for planning one organization at a time.
pub fn by_home(tree: &Tree) -> BTreeMap<String, Home> {
    let mut out: BTreeMap<String, Home> = BTreeMap::new();
    for o in &tree.organizations {
        out.entry(o.object.namespace().unwrap_or_default())
            .or_default()
            .0
            .push(o.object.clone());
    }
    for p in &tree.projects {
        out.entry(p.object.namespace().unwrap_or_default())
            .or_default()
            .1
            .push(p.object.clone());
    }
    for m in &tree.memberships {
        out.entry(m.object.namespace().unwrap_or_default())
            .or_default()
            .2
            .push(m.object.clone());
    }
    out
}
