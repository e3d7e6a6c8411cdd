# The two commands a newcomer needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo demo-in-cluster down test lint bench crds control-plane fuzz image

help:
	@echo "make demo           local control plane + roster + examples/, then what roster converged"
	@echo "make demo-in-cluster  the same with one real node (root): roster's image in pods, installed"
	@echo "                    by the Helm chart, reached through its Services"
	@echo "make down           stop everything make demo (or demo-in-cluster) started"
	@echo "make test           the whole suite: unit, HTTP and cluster tests (real kube-apiserver + etcd,"
	@echo "                    Chromium, an SMTP server); installs the browser and SMTP test tools first"
	@echo "make lint           cargo fmt --check, cargo clippy -D warnings, go vet"
	@echo "make bench          benchmarks (release build), written to BENCHMARKS.md"
	@echo "make fuzz           the property tests of the webhook and identity routes, long (release build)"
	@echo "make crds           regenerate crds/ and the chart's CRDs from src/api"
	@echo "make control-plane  build (or find cached) kube-apiserver, etcd, kubectl"
	@echo "make image          the container image as an OCI archive: target/image/roster-<version>.tar"
	@echo "                    (ctr images import / docker load; no daemon or registry needed)"

demo:
	@scripts/demo.sh

demo-in-cluster:
	@scripts/demo-in-cluster.sh

down:
	@scripts/down.sh

# The node tier (roster's image on a real kubelet) runs where it can; scripts/node-tier.sh says
# which, and builds the image when it does.
test:
	@scripts/test-deps.sh
	@source scripts/node-tier.sh && cargo test --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	cd tests/control-plane && test -z "$$(gofmt -l devcluster pause)" && GOFLAGS=-mod=mod go vet ./devcluster ./pause

bench:
	@scripts/bench.sh

crds:
	cargo run --locked --quiet -- crds --write

# make test runs these with a few thousand cases each; here, many more. ROSTER_FUZZ_SEED
# replays a failure (each run prints its seed).
fuzz:
	ROSTER_FUZZ_CASES=$${WEBHOOK_CASES:-2000000} cargo test --locked --release --lib -- --nocapture webhook::fuzz::no_request
	ROSTER_FUZZ_CASES=$${ROUTER_CASES:-200000} cargo test --locked --release --lib -- --nocapture webhook::fuzz::the_router
	ROSTER_FUZZ_CASES=$${IDENTITY_CASES:-100000} cargo test --locked --release --lib -- --nocapture every_route_answers

control-plane:
	@tests/control-plane/build.sh

# The image: release binary + the libraries it links, non-root, no shell (scripts/image-rootfs.sh),
# packed without a daemon (scripts/oci-archive.py). Import with
#   ctr -n k8s.io images import target/image/roster-$(VERSION).tar    or    docker load -i ...
# Named localhost/roster (as Podman names local builds): containerd's CRI qualifies a bare
# `roster` with a registry's name and would look for it there; the chart's default matches.
VERSION := $(shell awk -F'"' '/^version/ {print $$2; exit}' Cargo.toml)
CARGO_OUT := $(or $(CARGO_TARGET_DIR),target)
image:
	cargo build --locked --release --bin roster
	scripts/image-rootfs.sh $(CARGO_OUT)/release/roster target/image/rootfs
	scripts/oci-archive.py target/image/rootfs target/image/roster-$(VERSION).tar localhost/roster:$(VERSION)
