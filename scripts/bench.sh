#!/usr/bin/env bash
# make bench: runs the benchmarks and writes BENCHMARKS.md. Absolute times on shared 2-core
# machines are noisy; read the ratios, which are measured side by side in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=BENCHMARKS.md
# The benches' standard error (build output, panics) goes here; a failed run shows its end,
# where it used to print make's "Error 1" alone.
log=target/bench-stderr.log
mkdir -p target
: >"$log"
trap 'echo "make bench failed; the end of $log:" >&2; tail -n 30 "$log" >&2' ERR
# The Markdown tables of a bench's output (its other lines, such as the login benchmark's
# security log JSON, dropped), a blank line between two tables.
tables() { awk '/^\|/ { if (gap && n) print ""; print; n++; gap = 0; next } /^$/ { gap = 1 }'; }
# In process, these two run with the environment the image gives `roster run`.
webhook=$(MIMALLOC_PURGE_DELAY=0 cargo bench --locked --quiet --bench webhook 2>>"$log" | tables)
login=$(MIMALLOC_PURGE_DELAY=0 cargo bench --locked --quiet --bench login 2>>"$log" | tables)
plan=$(cargo bench --locked --quiet --bench plan 2>>"$log" | grep '^|')
converge=$(cargo bench --locked --quiet --bench converge 2>>"$log" | grep -E '^(\||$)')
memory=$(ROSTER_BENCH_ONLY=memory ROSTER_BENCH_MEMBERS=1000 cargo bench --locked --quiet --bench converge 2>>"$log" | grep '^|')
invitations=$(ROSTER_BENCH_ONLY=invitations cargo bench --locked --quiet --bench converge 2>>"$log" | grep -E '^(\||$)')
scaling=$(ROSTER_BENCH_ONLY=scaling cargo bench --locked --quiet --bench converge 2>>"$log" | grep '^|')
admission=$(cargo bench --locked --quiet --bench admission 2>>"$log" | grep '^|')
# The peer: Capsule built from its Go module (scripts/capsule.sh, cached like the control plane).
# Exit 4 means the module proxy would not serve it: the section says so instead of a table.
peer=
peer_why=
capsule_err=$(mktemp)
capsule_rc=0
scripts/capsule.sh >/dev/null 2>"$capsule_err" || capsule_rc=$?
if [ "$capsule_rc" = 0 ]; then
    peer=$(cargo bench --locked --quiet --bench peer 2>>"$log" | grep '^|')
elif [ "$capsule_rc" = 4 ]; then
    peer_why=$(grep -v '^[[:space:]]*$' "$capsule_err" | head -n 4)
else
    cat "$capsule_err" >&2
    rm -f "$capsule_err"
    exit "$capsule_rc"
fi
rm -f "$capsule_err"
{
    echo "# Benchmarks"
    echo
    echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "$(nproc) cores, $(rustc --version). Release build. Server and load generator share the"
    echo "machine (each on a runtime of its own thread), so absolute numbers include contention;"
    echo "the last column compares with a baseline measured in the same run."
    echo
    echo "## Admission webhook and TokenReview latency over HTTPS (benches/webhook.rs)"
    echo
    echo "Load on loopback at a fixed rate: each request is sent at its scheduled time, up to 8 in"
    echo "flight over keep-alive TLS connections, 100 s per row, in ten rounds of 10 s with the rows"
    echo "taking turns (a stall of the shared machine lands in one round of one row; the last column"
    echo "is the median of a row's ten rounds' ratios, the one before it from the pooled requests)."
    echo "Each row's requests alternate one for"
    echo "one with as many GET /healthz to the same server (the identity server's own for its rows),"
    echo "so both meet the same moments of a shared machine; the ratio columns compare the row's p99"
    echo "with the p99 of those interleaved /healthz requests. Latency counts from the scheduled send"
    echo "time (a stall is charged to every request it delays) to when the whole answer is in, and"
    echo "every answer is then checked: a wrong"
    echo "allow, deny, authentication or reason counts as a wrong answer, not a success. The index"
    echo "is roster's real one (reflector stores) holding 20,000 Memberships of one organization;"
    echo "TokenReview rows hit the identity server (same process, its own port), whose caches also"
    echo "hold 20,000 credential records. Targets: webhook p99 under 2 ms and at most 1.5× the"
    echo "/healthz p99; TokenReview and SubjectAccessReview p99 at most 1.1× the /healthz p99."
    echo "The benchmark runs with roster's allocator (mimalloc), as \`roster run\` does."
    echo
    echo "The last row of the first table is no decision: the SubjectAccessReview's request, POSTed"
    echo "to a route of the benchmark's own that reads it and answers at once with bytes of the"
    echo "same size. It shows what carrying a POST with a JSON body costs next to GET /healthz; the"
    echo "identity rows are within the transport row's ratio when roster's own share is small."
    echo
    echo "The second table is a lower bound of what the decision itself costs: each router called"
    echo "in process, the scenarios taking turns request by request on one thread, with no TLS,"
    echo "socket, load generator or concurrent request. Its last columns are the microseconds a"
    echo "request adds to /healthz's there (at a /healthz p99 of about 0.5 ms, 1.1× is 50 µs). The"
    echo "third table is the same with 16 MiB written over before each request (out of the timing),"
    echo "so that no cache holds the request's code or data. That is what the HTTPS rows meet: on"
    echo "these shared machines a request comes a millisecond after the last, and its handler took"
    echo "about as long, timed inside the served router, as this table says, not the second. The"
    echo "targets are judged on the first table."
    echo
    echo "$webhook"
    echo
    echo "## Login throughput vs raw argon2id (benches/login.rs)"
    echo
    echo "A real kube-apiserver + etcd (devcluster) on the same machine; logins through roster's"
    echo "router in process (no TLS), OWASP argon2id, hashing capped at the CPU count. The baseline"
    echo "is Hasher::verify alone at the same concurrency, in 48 rounds of 2 s of each whose order"
    echo "flips every round (raw, login; login, raw; ...), after one of each not counted (a process's"
    echo "first logins create each member's security Event). One round's ratio moves by up to 15%"
    echo "either way on this shared machine: argon2's own speed drifts (measured once inside the"
    echo "hashing threads, its CPU time per check moved between 14 and 20 ms within two minutes, alike"
    echo "in raw and login rounds). So a run's ratio is the pooled one of all pairs, with every"
    echo "round's beside it, their median, and their mean with two standard errors (about a 95%"
    echo "interval). perf over a minute of these rounds (both kinds) found 97% of this process's"
    echo "samples in argon2 and 2.7% in everything else, kernel included. The caches hold 20,000"
    echo "more members with credential records (the identity's reads go through them). Target: at"
    echo "least 97%."
    echo "Reading the credential record with a quorum GET per login measured 84% here (the API"
    echo "server's CPU competes with argon2 on the same 2 cores); reads now come from the watch,"
    echo "with this process's own writes layered on top and one attempt per member at a time."
    echo "A login counts as completed when it answers 200 with a session token. The security log"
    echo "writes as in a cluster: its Events on the organization's namespace (the benchmark checks"
    echo "that their counts add up to the logins) and its ConfigMap."
    echo "The CPU row splits each kind's CPU time per completed operation into this process's user"
    echo "and kernel time and the control plane's (etcd, kube-apiserver, kube-controller-manager):"
    echo "what a login costs beside argon2. Each check hashes in working memory roster keeps while"
    echo "other checks wait; freed and faulted in again each time, the kernel's share was 13.6 ms a"
    echo "check (40%), and raw checks ran at 57 a second instead of 91. The ConfigMap of a busy"
    echo "organization is written every 5 s; once a second it cost 0.5 ms of CPU per login here."
    echo
    echo "The second table is the claim \"one generic error\": every way a login fails short of a"
    echo "lockout must answer the same status and bytes as a wrong password (column 2 counts those"
    echo "that did not) and take the same time to answer. The work columns are each kind's own"
    echo "cost without the floor (each hashes once; a wrong password or code also reads and writes"
    echo "the failure count, an unknown address has nothing to read or write); the answer columns"
    echo "are as \`roster run\` answers, no sooner than --login-failure-floor after arrival. Target:"
    echo "each answer median within 2% of the wrong password's."
    echo
    echo "The third table sends, at once, 9 wrong guesses for one address and 40 for unknown ones"
    echo "(one source within the default limits): a member's guesses must not queue behind each"
    echo "other (hashing happens before the member's turn), so their slowest answer must match an"
    echo "unknown address's. Target: medians within 10%."
    echo
    echo "$login"
    echo
    echo "## roster plan on large trees (benches/plan.rs)"
    echo
    echo "Generated trees (every org and project role, disabled and expired members, MFA required in"
    echo "every third organization) read from one file and judged as \`roster plan -f\` judges them:"
    echo "YAML, the CRD schemas and CEL rules, the webhook's validate() for every object, the"
    echo "controller's plan() for every organization, the JSON report. The last row puts 20,000"
    echo "Memberships in one organization, where anything quadratic in its size would show."
    echo "Target: well under a second per thousand objects."
    echo
    echo "$plan"
    echo
    echo "## Convergence against the write floor (benches/converge.rs)"
    echo
    echo "A real kube-apiserver + etcd with its audit log; \`roster run\` (controller and webhook, identity"
    echo "off) as a process; 20 organizations × 10 projects × 100 members (ROSTER_BENCH_MEMBERS per"
    echo "organization). (a) every object created, 16 requests in flight, while roster runs; (b) another"
    echo "such tree stored while roster is stopped, then roster started. The floor is a third tree"
    echo "converged by a minimal client issuing exactly the writes plan() says convergence needs"
    echo "(namespaces, RoleBindings, finalizers, one status per object; no Events), 16 in flight, in the"
    echo "same run. roster's writes are counted from the audit log, and its time ends at its last"
    echo "write there (Events aside), once a check of everything stored finds nothing left to do:"
    echo "(a) from the first create, (b) from roster's start. The floor's second row writes the"
    echo "Membership statuses by server-side apply as roster does (a merge patch is cheaper for the"
    echo "API server but would leave behind fields a new status omits). Targets: writes at most"
    echo "1.3× the floor, time at most 1.3× the floor client's. One cold start beside one floor run"
    echo "is one sample of a shared machine (the same tree has given 1.24× and 1.54× an hour apart),"
    echo "so the last table repeats (b) in rounds, each on a control plane of its own with the floor"
    echo "client right after it, and gives the median of the rounds' ratios too, with the CPU each"
    echo "client used (what a client burns on 2 cores the API server cannot)."
    echo
    echo "$converge"
    echo
    echo "### Memory at 20,000 Memberships"
    echo
    echo "One tree of 20 × 10 × 1,000 (20,000 Memberships) stored with every member's credential record"
    echo "(accepted, with a password: 20,000 Secrets in roster's namespace), roster started with identity"
    echo "on so that it caches them all, converged, then steady: RSS (anonymous and file-backed) once it"
    echo "has held within 1 MiB over ten samples a second apart, read at least 5 s after converging (the reading at 5 s beside"
    echo "it), and its peak, from /proc. Target: 64 MiB. The cache keeps one copy of what members share (crate::pool):"
    echo "names always; grants, access lists and condition times when equal. The generated members hold"
    echo "two grants each, in thirty patterns per organization, and converge within seconds of each other,"
    echo "so those are shared here; with only the names shared the same run measured 64 MiB (f78354a)."
    echo
    echo "$memory"
    echo
    echo "### Invitations"
    echo
    echo "The default tree (20 × 10 × 100) stored without credential records, roster started with"
    echo "identity on and no SMTP (links delivered as Secrets): time until every invitation plan()"
    echo "asks for shows as Pending in its Membership's status, roster's writes by kind from the audit"
    echo "log (credential records in roster's namespace included), and the Events it left."
    echo
    echo "$invitations"
    echo
    echo "### Against the number of members"
    echo
    echo "Cold starts of 20 organizations × 10 projects at 100, 1,000, 10,000 and 20,000 members (the"
    echo "large run: its time against the floor's), each size on a control plane of its own, beside"
    echo "the floor client on a second tree of the same size. 20,000 members run in three rounds,"
    echo "each on a control plane of its own (one sample moved between 1.07× and 1.44× in a day);"
    echo "the picture takes the round whose ratio is the median. roster's time counts from its start:"
    echo "it includes listing everything (\"ready\") before its first write; the floor client's does not."
    echo "Every status roster writes also comes back to it through its watch, work the API server does"
    echo "for any controller while the floor client holds no watch. So each 20,000 round also times"
    echo "the floor client, on a third tree, with a watch on every Membership open while it writes"
    echo "(the last rows); the target stays against the floor client without one."
    echo "The CPU columns: roster's from its start to 5 s after converging; the floor client's (the"
    echo "benchmark process) from listing its tree and planning to its last write, although its time"
    echo "counts from its first write only."
    echo
    echo "![convergence time, writes and memory against members](docs/bench/scaling.svg)"
    echo
    echo "$scaling"
    echo
    echo "## Admission end to end (benches/admission.rs)"
    echo
    echo "100 writers through the API server (devcluster on the same 2 cores), each the organization's"
    echo "Admin (impersonated) annotating one Member's Membership once a second (100 writes/s in all;"
    echo "ROSTER_BENCH_WRITER_RATE per writer), every request sent"
    echo "at its scheduled time and timed from then; roster's webhook registered, then not, in"
    echo "alternating rounds after a warm-up (seven each), a probe checking each time that the API server"
    echo "calls the webhook exactly when registered (the Admin deleting the owner's Membership, dry run,"
    echo "is denied only by the webhook). Organization of 1,000 members, converged. Target: the webhook"
    echo "adds under 5 ms at p99. The cost is shown two ways: all rounds pooled, and the median of the"
    echo "rounds' paired differences (each with-round less the without-round before it). One bad round"
    echo "(a host hiccup in 10 s of one arm) moves the pooled p99 by tens of milliseconds; the median"
    echo "of the pairs does not. The rate stays below what the machine takes: at 200 writes/s a machine"
    echo "of half the usual speed queued requests without the webhook already (p99 270 ms), and a"
    echo "saturated run measures its queues, not the webhook."
    echo
    echo "The second table is where the webhook's time goes: the CPU roster, the control plane and the"
    echo "writers spent per write in each arm. A write costs the control plane about 10 ms of CPU"
    echo "with or without the webhook, so 100 writes a second keep half of the 2 cores busy, and"
    echo "what the webhook adds in CPU (roster's side and the API server's) lengthens every queue."
    echo "roster's side was 0.63 ms a call when the AdmissionReview was read through a DynamicObject;"
    echo "read straight into roster's types it is about 0.4 ms (most of the rest is TLS, HTTP/2"
    echo "and the runtime's wake-ups). Serving the webhook on a thread of its own (one runtime"
    echo "thread, fewer wake-ups) measured no difference and was left out."
    echo
    echo "$admission"
    echo
    if [ -n "$peer_why" ]; then
        echo "## A peer side by side: not run"
        echo
        echo "Capsule (github.com/projectcapsule/capsule) was to give the same owners admin RoleBindings in"
        echo "the same namespaces on the same kind of API server (benches/peer.rs), but scripts/capsule.sh"
        echo "could not fetch it through the Go module proxy configured here; it said:"
        echo
        echo "$peer_why" | sed 's/^/    /'
    else
        echo "## A peer side by side: Capsule (benches/peer.rs)"
        echo
        echo "Capsule (github.com/projectcapsule/capsule, built by scripts/capsule.sh from its Go module, on the"
        echo "same Kubernetes 0.36 libraries as the control plane) and roster give the same 20 owners the"
        echo "\`admin\` ClusterRole in the same 200 namespaces (10 each), each peer on a fresh control plane"
        echo "(devcluster, audit log on) in the same run. Capsule: its chart's CRDs, a CapsuleConfiguration"
        echo "of the chart's defaults, its manager as a local process; the bench creates a Tenant per owner"
        echo "and the namespaces with the owner reference and tenant label Capsule's namespace webhook would"
        echo "give them. roster (\`--member-subjects external\`, so the RoleBinding subjects are the same plain"
        echo "user names): an Organization, 10 Projects and the owner's Membership per owner. Time runs from"
        echo "the first create, the peer already running: until every namespace holds its owner's admin"
        echo "RoleBinding (a watch), and until the peer's last write (Events aside) before 15 s of none."
        echo "Writes are the peer's, by user agent, from the audit log; RSS once quiet, peak from VmHWM."
        echo
        echo "What differs: roster also creates the 200 namespaces (its writes include them; for Capsule the"
        echo "bench creates them); neither peer's admission webhooks are registered (Capsule's would set the"
        echo "owner reference and label the bench sets, and check every namespace and Tenant write); Capsule"
        echo "binds each owner to two ClusterRoles per namespace (\`admin\` and \`capsule-namespace-deleter\`,"
        echo "its default) and keeps a RuleStatus per namespace, roster writes a binding per project role"
        echo "(Admin, Developer, Viewer; the last two without subjects here) per namespace and three in each"
        echo "home namespace, and the owner's Membership; Capsule runs without leader election (one process),"
        echo "roster without its identity server. Capsule is timed with the chart's defaults and with more"
        echo "workers and client rate, roster with its defaults."
        echo
        echo "$peer"
    fi
} >"$out"
echo "wrote $out"
cat "$out"
