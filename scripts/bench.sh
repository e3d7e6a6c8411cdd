#!/usr/bin/env bash
# make bench: runs the benchmarks and writes BENCHMARKS.md. Absolute times on shared 2-core
# machines are noisy; read the ratios, which are measured side by side in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=BENCHMARKS.md
webhook=$(cargo bench --locked --quiet --bench webhook 2>/dev/null)
{
    echo "# Benchmarks"
    echo
    echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "$(nproc) cores, $(rustc --version). Release build. Server and load generator share the"
    echo "machine (each on a runtime of its own thread), so absolute numbers include contention;"
    echo "the last column compares with a baseline measured in the same run."
    echo
    echo "## Admission webhook latency over HTTPS (benches/webhook.rs)"
    echo
    echo "Load on loopback at a fixed rate: each request is sent at its scheduled time, up to 8 in"
    echo "flight over keep-alive TLS connections (a wait for a free one counts as latency), 10 s per row. The index"
    echo "is roster's real one (reflector stores) holding 10,000 Memberships of one organization."
    echo "Target: p99 under 2 ms."
    echo
    echo "$webhook"
} >"$out"
echo "wrote $out"
cat "$out"
