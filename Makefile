# The two commands a newcomer needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo down test lint bench crds control-plane

help:
	@echo "make demo           local control plane + roster + examples/, then what roster converged"
	@echo "make down           stop everything make demo started"
	@echo "make test           the whole suite: unit, HTTP and cluster tests (real kube-apiserver + etcd,"
	@echo "                    Chromium, an SMTP server); installs the browser and SMTP test tools first"
	@echo "make lint           cargo fmt --check, cargo clippy -D warnings, go vet"
	@echo "make bench          benchmarks (release build), written to BENCHMARKS.md"
	@echo "make crds           regenerate crds/ and the chart's CRDs from src/api"
	@echo "make control-plane  build (or find cached) kube-apiserver, etcd, kubectl"

demo:
	@scripts/demo.sh

down:
	@scripts/down.sh

test:
	@scripts/test-deps.sh
	cargo test --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	cd tests/control-plane && test -z "$$(gofmt -l devcluster)" && GOFLAGS=-mod=mod go vet ./devcluster

bench:
	@scripts/bench.sh

crds:
	cargo run --locked --quiet -- crds --write

control-plane:
	@tests/control-plane/build.sh
