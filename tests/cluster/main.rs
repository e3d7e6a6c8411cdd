//! Cluster tests: roster against a real kube-apiserver and etcd (see harness.rs).
//! One binary for all of them: one control plane, one link step.

mod browser;
mod chart;
mod controller;
mod harness;
mod identity;
mod in_cluster;
mod login_failures;
mod mail;
mod members;
mod node;
mod pods;
mod review;
mod revocation;
mod smoke;
mod trust;
mod webhook;
