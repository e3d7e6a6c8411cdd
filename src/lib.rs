//! roster: organizations, projects and memberships as Kubernetes resources.
#![forbid(unsafe_code)]

pub mod api;
pub mod crdgen;
