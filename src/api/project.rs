use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A project of an organization: a workload namespace whose RoleBindings follow the members'
/// project roles.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "Project",
    namespaced,
    status = "ProjectStatus",
    shortname = "proj",
    category = "roster",
    derive = "PartialEq",
    doc = "A project: a workload namespace whose access follows the members' project roles.",
    // The name becomes a namespace name (`<organization>-<name>`) and a label value: it must be
    // a DNS label. (That the whole namespace name fits 63 characters depends on the
    // organization's name, which CEL cannot see: the webhook checks it.)
    validation = kube::core::Rule::new(r#"self.metadata.name.size() <= 63 && self.metadata.name.matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")"#)
        .message("a Project's name must be a DNS label (lower-case letters, digits and '-', at most 63 characters): it becomes part of a namespace name"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// `namespace` is a CEL reserved word: Kubernetes exposes the field as `__namespace__`.
#[x_kube(validation = kube::core::Rule::new(
    "has(self.__namespace__) == has(oldSelf.__namespace__) && (!has(self.__namespace__) || self.__namespace__ == oldSelf.__namespace__)"
).message("spec.namespace is immutable: it cannot be set, changed or removed after the Project is created; create a new Project instead"))]
pub struct ProjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// Workload namespace; defaults to `<organization>-<project>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = kube::core::Rule::new(r#"self.matches("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")"#)
        .message("must be a namespace name (a DNS label: lower-case letters, digits and '-')"))]
    pub namespace: Option<String>,

    /// What happens to the workload namespace when the Project is deleted.
    #[serde(default)]
    pub namespace_deletion: NamespaceDeletion,

    /// Take over the workload namespace although roster did not create it: it must also carry
    /// the annotation `roster.dev/adopt: <organization>/<project>` (set by whoever owns the
    /// namespace). Only a platform admin (a trusted identity) may set this; a namespace taken
    /// over is handed back, never deleted, when the Project goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing_namespace: bool,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum NamespaceDeletion {
    /// Keep the namespace (and its workloads); only roster's RoleBindings are removed.
    #[default]
    Retain,
    /// Delete the namespace with the Project (only if roster created it).
    Delete,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The workload namespace roster manages for this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Members with access to the project right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
