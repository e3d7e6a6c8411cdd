//! roster: organizations, projects and memberships as Kubernetes resources.
#![forbid(unsafe_code)]

pub use error::Error;
pub use reason::Reason;

pub mod access;
pub mod api;
pub mod cache;
pub mod cli;
pub mod condition;
pub mod controller;
pub mod crdgen;
mod error;
#[cfg(test)]
mod fixtures;
pub mod grants;
pub mod identity;
pub mod metrics;
pub mod pool;
mod reason;
pub mod review;
pub mod runtime;
pub mod subjects;
pub mod tls;
pub mod webhook;
