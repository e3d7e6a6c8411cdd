//! roster: organizations, projects and memberships as Kubernetes resources.
#![forbid(unsafe_code)]

pub mod access;
pub mod api;
pub mod cli;
pub mod condition;
pub mod controller;
pub mod crdgen;
#[cfg(test)]
mod fixtures;
pub mod identity;
pub mod metrics;
pub mod subjects;
pub mod webhook;
