//! Login throughput against raw argon2id throughput, measured side by side in one run.
//!
//! Logins go through roster's real identity router (`POST /api/v1/login`, in process, no TLS)
//! with the real credential store (reads through a watch, compare-and-swap writes) on a real
//! kube-apiserver (started here with devcluster),
//! OWASP argon2id parameters (m = 19 MiB, t = 2, p = 1) and the hashing cap at the number of
//! CPUs. The baseline is the same `Hasher::verify` called directly with the same concurrency.
//! Rounds alternate (raw, login, raw, login, ...) so that machine noise hits both alike.
//!
//! `cargo bench --bench login` (or `make bench`) prints a Markdown table (the lines starting
//! with `|`; the security log's JSON lines go to standard output too, as in production).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::Request;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::runtime::watcher::Event;
use roster::api::{Membership, MembershipSpec, OrgRole, Organization, OrganizationSpec};
use roster::cache::Writer;
use roster::identity::Secret;
use roster::identity::audit::SecurityLog;
use roster::identity::limit::{DEFAULT_FAILURE_FLOOR, Limits};
use roster::identity::password::Hasher;
use roster::identity::server::{AppState, router};
use roster::identity::service::{Identity, Keys};
use roster::identity::store::Record;
use tower::ServiceExt;

// The allocator `roster run` has (src/main.rs): what a request costs includes its
// allocations. `make bench` runs this with MIMALLOC_PURGE_DELAY=0, as the image sets it.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MEMBERS: usize = 32;
/// Members (and credential records) in the caches besides the ones that log in.
const CACHED: usize = 20_000;
const IN_FLIGHT: usize = 8;
/// Rounds per kind. argon2's own speed drifts on a shared machine: measured inside the hashing
/// threads, its CPU time per check moved between 14 and 20 ms within two minutes, alike in raw
/// and login rounds. Sixteen pairs of 4 s rounds put a run's ratio anywhere in 94–101%; pairs
/// of shorter rounds sit closer in time, and more of them narrow what one run measures.
const ROUNDS: usize = 48;
const ROUND: Duration = Duration::from_secs(2);
const PASSWORD: &str = "correct horse battery staple 42";

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cp = common::start_control_plane(root, "login");

    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (raw, login, (work, answers, concurrent), (raw_cpu, login_cpu)) = rt.block_on(async {
        let client = common::client(&cp).await;
        let ns: kube::Api<Namespace> = kube::Api::all(client.clone());
        // roster's namespace, and the organization's: the security Events are written there
        // (without it each was a refused write, cheaper than the real one).
        for name in ["roster-system", "acme"] {
            let _ = ns
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                        .expect("ns"),
                )
                .await;
        }
        let hasher = Hasher::owasp(cpus).expect("hasher");
        let (seal_key, seal_bytes) = roster::identity::seal::Key::generate();
        let sealer = roster::identity::seal::Key::from_bytes(&seal_bytes).expect("seal key");
        let mut orgs = Writer::<Organization>::default();
        // As `roster run` has it: compact Memberships, and by e-mail from the same events.
        let (memberships, emails, mut members) = roster::cache::members();
        let log = SecurityLog::start(
            client.clone(),
            "roster-system",
            orgs.as_reader(),
            emails.clone(),
        );
        // As `roster run` has it: credential reads come from a watch.
        let (credentials, changes) = roster::cache::credentials(&client, "roster-system");
        tokio::spawn(futures::StreamExt::for_each(changes, |_| async {}));
        let identity = Arc::new(
            Identity::new(
                client.clone(),
                "roster-system",
                Keys {
                    seal: seal_key,
                    signer: roster::identity::token::Signer::new(&[9; 32]),
                },
                hasher.clone(),
                "https://127.0.0.1".into(),
                None,
                log,
            )
            .with_credential_cache(credentials.clone()),
        );
        let mut org = Organization::new(
            "acme",
            OrganizationSpec {
                display_name: None,
                owner: "m0@acme.example".into(),
                default_role: OrgRole::Member,
                admins_see_all_projects: false,
                security: Default::default(),
                max_access_removals: None,
            },
        );
        org.metadata.namespace = Some("acme".into());
        orgs.apply_watcher_event(&Event::Apply(org));
        let phc = hasher.hash(&Secret::new(PASSWORD)).await.expect("hash");
        // m*: accepted with a password; e*: also enrolled in TOTP; i*: invited, never accepted;
        // d*: accepted, then disabled.
        let store = roster::identity::store::Store::new(client.clone(), "roster-system");
        // c*: accepted, kept for the concurrent-guesses rounds.
        for (prefix, kind) in [("m", 'm'), ("e", 'e'), ("i", 'i'), ("d", 'd'), ("c", 'c')] {
            for i in 0..MEMBERS {
                let email = format!("{prefix}{i}@acme.example");
                let mut m = Membership::new(
                    &format!("{prefix}{i}"),
                    MembershipSpec {
                        email: email.clone(),
                        display_name: None,
                        role: None,
                        projects: vec![],
                        disabled: kind == 'd',
                        mfa: None,
                        expires_at: None,
                    },
                );
                m.metadata.namespace = Some("acme".into());
                members.apply(Event::Apply(m));
                let owner = roster::identity::store::Store::secret_name("acme", &email);
                let seed = roster::identity::totp::Seed::generate();
                // Seeded directly in the store (the bench measures logins, not invitations).
                let record = Record {
                    email: email.clone(),
                    password_hash: (kind != 'i').then(|| phc.clone()),
                    accepted_at: (kind != 'i').then_some(1),
                    totp_sealed: (kind == 'e').then(|| sealer.seal(seed.as_bytes(), &owner)),
                    ..Default::default()
                };
                store.create("acme", &email, &record).await.expect("record");
            }
        }
        // The large cache: 20,000 more members with credential records (accepted, with a
        // password), as an organization of that size has them; logins read beside them.
        for i in 0..CACHED {
            let email = format!("bulk{i}@acme.example");
            let mut m = Membership::new(
                &format!("bulk{i}"),
                MembershipSpec {
                    email: email.clone(),
                    display_name: None,
                    role: None,
                    projects: vec![],
                    disabled: false,
                    mfa: None,
                    expires_at: None,
                },
            );
            m.metadata.namespace = Some("acme".into());
            members.apply(Event::Apply(m));
        }
        futures::StreamExt::for_each_concurrent(futures::stream::iter(0..CACHED), 16, |i| {
            let (store, phc) = (&store, &phc);
            async move {
                let email = format!("bulk{i}@acme.example");
                let record = Record {
                    email: email.clone(),
                    password_hash: Some(phc.clone()),
                    accepted_at: Some(1),
                    ..Default::default()
                };
                store.create("acme", &email, &record).await.expect("record");
            }
        })
        .await;
        while credentials.state().len() < CACHED + 5 * MEMBERS {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let state = |limits| {
            Arc::new(AppState {
                identity: identity.clone(),
                orgs: orgs.as_reader(),
                memberships: memberships.clone(),
                revocations: Default::default(),
                limits,
                audiences: vec![],
                cluster: None,
                emails: Some(emails.clone()),
            })
        };
        let floor = roster::api::parse_duration("floor", DEFAULT_FAILURE_FLOOR).expect("floor");
        let floored = router(state(Limits::off().with_failure_floor(floor)));
        let app = router(state(Limits::off()));
        let (mut raw, mut login) = (Vec::new(), Vec::new());
        // CPU seconds per round, (this process in user space, in the kernel, the control
        // plane): where the difference goes.
        let (mut raw_cpu, mut login_cpu) = (Vec::new(), Vec::new());
        let cpu = || {
            let (user, system) = common::cpu_split(std::process::id());
            (user, system, common::control_plane_cpu_seconds(&cp))
        };
        // One round of each first, not counted: the first logins create each member's
        // security Event and log, and fill the caches, once in a process's life. Then the
        // order flips every round (raw, login; login, raw; …): a drift of the machine's speed
        // during the run lands on both kinds alike.
        let raw_round = || {
            let (h, p) = (hasher.clone(), phc.clone());
            measure(move |_| {
                let (hasher, phc) = (h.clone(), p.clone());
                async move {
                    hasher
                        .verify(&Secret::new(PASSWORD), &phc)
                        .await
                        .unwrap_or(false)
                }
            })
        };
        let login_round = || {
            let a = app.clone();
            measure(move |i| {
                let app = a.clone();
                async move {
                    let body = serde_json::json!({"organization": "acme",
                    "email": format!("m{}@acme.example", i % MEMBERS), "password": PASSWORD});
                    let req = Request::post("/api/v1/login")
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .expect("request");
                    // A success is a 200 that carries a session token, not any 200.
                    let Ok(resp) = app.oneshot(req).await;
                    let ok = resp.status() == http::StatusCode::OK;
                    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                    ok && body.is_ok_and(|b| {
                        serde_json::from_slice::<serde_json::Value>(&b.to_bytes())
                            .is_ok_and(|v| v["token"].as_str().is_some_and(|t| !t.is_empty()))
                    })
                }
            })
        };
        for round in 0..=ROUNDS {
            for login_now in [round % 2 == 1, round % 2 == 0] {
                let before = cpu();
                if login_now {
                    login.push(login_round().await);
                    login_cpu.push(since(before, cpu()));
                } else {
                    raw.push(raw_round().await);
                    raw_cpu.push(since(before, cpu()));
                }
            }
        }
        raw.remove(0);
        raw_cpu.remove(0);
        login_cpu.remove(0);
        let warm_up = login.remove(0);
        // The logins' security Events are there, each login counted once (the counts of
        // repeated Events are written every COUNTS_EVERY: wait for the last).
        let events: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(client.clone(), "acme");
        let logins: usize = login.iter().map(|r| r.0).sum::<usize>() + warm_up.0;
        let give_up = Instant::now() + roster::identity::security_events::COUNTS_EVERY * 3;
        let counted = loop {
            let counted: usize = events
                .list(&Default::default())
                .await
                .expect("events")
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("LoginSucceeded"))
                .map(|e| e.series.as_ref().map_or(1, |s| s.count as usize))
                .sum();
            if counted == logins || Instant::now() > give_up {
                break counted;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(
            counted, logins,
            "LoginSucceeded counted in Events, against logins"
        );
        // The work of each kind (no floor), then the answers as `roster run` gives them.
        let work = failure_costs(&app).await;
        let answers = failure_costs(&floored).await;
        let concurrent = concurrent_guesses(&floored).await;
        (
            raw,
            login,
            (work, answers, concurrent),
            (raw_cpu, login_cpu),
        )
    });
    drop(cp);
    let sum = |v: &[(usize, usize, f64)]| {
        let ok: usize = v.iter().map(|r| r.0).sum();
        let bad: usize = v.iter().map(|r| r.1).sum();
        let secs: f64 = v.iter().map(|r| r.2).sum();
        (ok, bad, ok as f64 / secs)
    };
    let (raw_ok, raw_bad, raw_rate) = sum(&raw);
    let (login_ok, login_bad, login_rate) = sum(&login);
    println!(
        "| ({cpus} CPUs; argon2id m=19 MiB t=2 p=1; {IN_FLIGHT} in flight; {ROUNDS} rounds of {} s of each, in flipping order, after one of each not counted) | completed | failed | per second | vs raw |",
        ROUND.as_secs()
    );
    println!("|---|---|---|---|---|");
    println!("| raw `Hasher::verify` (baseline) | {raw_ok} | {raw_bad} | {raw_rate:.1} | 100% |");
    println!(
        "| `POST /api/v1/login` (caches, credential read from the watch, argon2, lockout, token, security log) | {login_ok} | {login_bad} | {login_rate:.1} | {:.0}% |",
        100.0 * login_rate / raw_rate
    );
    let mut ratios: Vec<f64> = raw
        .iter()
        .zip(&login)
        .map(|(r, l)| 100.0 * (l.0 as f64 / l.2) / (r.0 as f64 / r.2))
        .collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.0}")).collect();
    let n = ratios.len();
    let mean = ratios.iter().sum::<f64>() / n as f64;
    let variance = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1).max(1) as f64;
    // Two standard errors of the pairs' mean: about a 95% interval for the ratio the machine
    // would give over many runs, given how much one pair's ratio moves.
    let spread = 2.0 * (variance / n as f64).sqrt();
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
    println!(
        "| the rounds' ratios (login / raw, %, in order): {}; their median | | | | {median:.0}% |",
        each.join(", "),
    );
    println!("| the pairs' mean, ± two standard errors | | | | {mean:.1}% ± {spread:.1} |");
    // CPU per completed operation: what login spends beside argon2, here and in the API server.
    let per_op = |runs: &[(usize, usize, f64)], cpu: &[(f64, f64, f64)]| {
        let ops = runs.iter().map(|r| r.0).sum::<usize>().max(1) as f64;
        let (user, system, cp) = cpu.iter().fold((0.0, 0.0, 0.0), |(a, b, c), (x, y, z)| {
            (a + x, b + y, c + z)
        });
        format!(
            "{:.1} + {:.1} + {:.1} ms",
            1000.0 * user / ops,
            1000.0 * system / ops,
            1000.0 * cp / ops
        )
    };
    println!(
        "| CPU per completed operation (this process in user space + in the kernel + the control plane): raw {}, login {} | | | | |",
        per_op(&raw, &raw_cpu),
        per_op(&login, &login_cpu)
    );
    println!();
    println!(
        "| failed login ({FAILURE_SAMPLES} each, one at a time, kinds interleaved) | answers unlike a wrong password's | work: median ms | work / wrong password's | answer (floor {DEFAULT_FAILURE_FLOOR}): median ms | p90 ms | answer / wrong password's |"
    );
    println!("|---|---|---|---|---|---|---|");
    let median = |v: &[f64]| percentile(v, 0.5);
    let (base_work, base_answer) = (median(&work[0].0), median(&answers[0].0));
    for (((what, ..), (w, unlike_w)), (a, unlike_a)) in FAILURES.iter().zip(&work).zip(&answers) {
        println!(
            "| {what} | {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.3} |",
            unlike_w + unlike_a,
            median(w),
            median(w) / base_work,
            median(a),
            percentile(a, 0.9),
            median(a) / base_answer
        );
    }
    println!();
    println!(
        "| 9 wrong guesses for one address at once, with 40 for unknown ones ({CONCURRENT_ROUNDS} rounds, floor {DEFAULT_FAILURE_FLOOR}) | slowest of the 9: median ms | max ms |"
    );
    println!("|---|---|---|");
    let members: Vec<f64> = concurrent.iter().map(|r| r.0).collect();
    let strangers: Vec<f64> = concurrent.iter().map(|r| r.1).collect();
    for (what, v) in [
        ("a member's address", &members),
        ("an unknown address", &strangers),
    ] {
        println!(
            "| {what} | {:.1} | {:.1} |",
            percentile(v, 0.5),
            v.iter().copied().fold(0.0, f64::max)
        );
    }
}

/// CPU seconds used between two readings of (user, kernel, the control plane).
fn since(before: (f64, f64, f64), after: (f64, f64, f64)) -> (f64, f64, f64) {
    (after.0 - before.0, after.1 - before.1, after.2 - before.2)
}

/// Rounds of 9 wrong guesses for one address sent at once with 40 for unknown addresses (one
/// source's worth within the default limits): per round, the slowest of the 9, for a member's
/// address and for an unknown one, alternating. (member slowest ms, stranger slowest ms)
async fn concurrent_guesses(app: &axum::Router) -> Vec<(f64, f64)> {
    let slowest = |target: String| {
        let app = app.clone();
        async move {
            let mut calls: Vec<(bool, String)> = vec![(true, target); 9];
            calls.extend((0..40).map(|i| (false, format!("filler{i}@acme.example"))));
            let answers = futures::future::join_all(calls.into_iter().map(|(probe, email)| {
                let app = app.clone();
                async move {
                    let body = serde_json::json!({"organization": "acme", "email": email,
                        "password": PASSWORD_WRONG});
                    let req = Request::post("/api/v1/login")
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .expect("request");
                    let started = Instant::now();
                    let status = app.oneshot(req).await.map(|r| r.status().as_u16());
                    (probe, status, started.elapsed().as_secs_f64() * 1000.0)
                }
            }))
            .await;
            answers
                .iter()
                .filter(|(probe, status, _)| *probe && *status == Ok(401))
                .map(|a| a.2)
                .fold(0.0, f64::max)
        }
    };
    let mut rounds = Vec::new();
    for round in 0..CONCURRENT_ROUNDS {
        let member = slowest(format!("c{round}@acme.example")).await;
        let stranger = slowest(format!("nobody{round}@acme.example")).await;
        rounds.push((member, stranger));
    }
    rounds
}

const CONCURRENT_ROUNDS: usize = 5;

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// How a login can fail short of a lockout, and an account of that kind.
const FAILURES: [(&str, &str, &str, Option<&str>); 6] = [
    ("wrong password", "m", PASSWORD_WRONG, None),
    (
        "right password, wrong TOTP code",
        "e",
        PASSWORD,
        Some("000000"),
    ),
    ("unknown e-mail", "x", PASSWORD, None),
    ("unknown organization", "org:nosuch", PASSWORD, None),
    ("invited, never accepted", "i", PASSWORD, None),
    ("disabled member", "d", PASSWORD, None),
];
const PASSWORD_WRONG: &str = "not the password at all 7";
const FAILURE_SAMPLES: usize = 40;

/// Per failure kind: the latencies (ms) of FAILURE_SAMPLES logins, one at a time and the kinds
/// interleaved, and how many answers differed from the wrong password's (status and bytes).
async fn failure_costs(app: &axum::Router) -> Vec<(Vec<f64>, usize)> {
    let mut out: Vec<(Vec<f64>, usize)> = vec![(Vec::new(), 0); FAILURES.len()];
    let mut reference: Option<(u16, axum::body::Bytes)> = None;
    for i in 0..FAILURE_SAMPLES {
        for (k, (_, who, password, code)) in FAILURES.iter().enumerate() {
            let (org, email) = match who.strip_prefix("org:") {
                Some(org) => (org.to_string(), format!("m{}@acme.example", i % MEMBERS)),
                None => (
                    "acme".to_string(),
                    format!("{who}{}@acme.example", i % MEMBERS),
                ),
            };
            let body = serde_json::json!({"organization": org, "email": email,
                "password": password, "code": code});
            let req = Request::post("/api/v1/login")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request");
            let started = Instant::now();
            let resp = app.clone().oneshot(req).await.expect("response");
            let status = resp.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .expect("body")
                .to_bytes();
            out[k].0.push(started.elapsed().as_secs_f64() * 1000.0);
            let answer = (status, bytes);
            let reference = reference.get_or_insert_with(|| answer.clone());
            if answer != *reference || status != 401 {
                out[k].1 += 1;
            }
        }
    }
    out
}

/// Runs `op` with IN_FLIGHT concurrent workers for ROUND; returns (ok, failed, seconds).
async fn measure<F, Fut>(op: F) -> (usize, usize, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let ok = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (op, ok, bad, next) = (op.clone(), ok.clone(), bad.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while start.elapsed() < ROUND {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if op(i).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    (
        ok.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    )
}
