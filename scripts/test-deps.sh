#!/usr/bin/env bash
# What the test suite needs besides Rust and Go, installed if missing (idempotent, quiet when
# there is nothing to do):
#   - Chromium (Debian's package) for the identity pages' browser test,
#   - playwright-core (npm, pinned in tests/browser/package-lock.json) to drive it,
#   - aiosmtpd (PyPI, pinned below) in a virtualenv, a real SMTP server for the mail test.
# Prints nothing but errors, so that `make test`'s output stays the test output.
set -euo pipefail
cd "$(dirname "$0")/.."

AIOSMTPD_VERSION=1.4.6
venv=target/test-deps/venv-aiosmtpd-$AIOSMTPD_VERSION

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null
    else
        echo "test-deps: Chromium is missing: install Debian's chromium package (or set CHROMIUM to a Chromium binary)" >&2
        exit 1
    fi
fi

if [ ! -f tests/browser/node_modules/playwright-core/package.json ] \
    || ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.roster-lock 2>/dev/null; then
    command -v npm >/dev/null || { echo "test-deps: npm (Node.js 20) is missing" >&2; exit 1; }
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
    cp tests/browser/package-lock.json tests/browser/node_modules/.roster-lock
fi

if [ ! -x "$venv/bin/aiosmtpd" ]; then
    command -v python3 >/dev/null || { echo "test-deps: python3 is missing" >&2; exit 1; }
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
