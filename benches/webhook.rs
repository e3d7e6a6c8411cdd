//! Webhook and TokenReview latency over HTTPS at a steady request rate, with 20,000 Memberships
//! in the index (and 20,000 credential records for TokenReview).
//!
//! The server is roster's own (`webhook::serve` + `webhook::router` + the reflector-store
//! index), on a runtime of its own thread; the load generator runs on another runtime and
//! sends AdmissionReviews over keep-alive TLS connections on loopback at a fixed rate: each request
//! has a scheduled send time, and a wait for a free connection (a slow server) counts toward its
//! latency. Each row interleaves its requests with as many `/healthz` requests (one each,
//! alternately, at the row's rate each): both meet the same moments of a busy machine, and the
//! difference is what the decision costs.
//!
//! `cargo bench --bench webhook` (or `make bench`) prints a Markdown table; `make bench` writes
//! it to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher::Event;
use roster::api::{
    Membership, MembershipSpec, OrgRole, Organization, OrganizationSpec, Project, ProjectGrant,
    ProjectRole, ProjectSpec,
};
use roster::cache::Writer;
use roster::tls::{self, Certificates};
use roster::webhook::{self, AppState, StoreIndex, validate::Policy};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

// The allocator `roster run` has (src/main.rs): what a request costs includes its
// allocations. `make bench` runs this with MIMALLOC_PURGE_DELAY=0, as the image sets it.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MEMBERS: usize = 20_000;
const RATE: u64 = 500; // requests per second, per scenario
/// 100, not 50: with 25,000 requests a row, one run's pooled p99 ratio still moved by ±0.1 to
/// ±0.2 on a shared machine, as much for a POST answered without being read (the transport
/// row) as for any decision; twice the requests narrow that by about a third.
const SECONDS: u64 = 100;
/// `SECONDS` of each row in this many rounds of 10 s, the rows taking turns. Five, not three,
/// at first: a p99 of 5,000 requests on a shared machine moved a row's ratio by ±0.2 from
/// round to round, and the median of three still carried one bad round's worth of that.
const ROUNDS: u64 = 10;
const CONNECTIONS: usize = 8;
/// Requests per scenario in the in-process tables (warm, and cold: see `in_process`).
const IN_PROCESS: usize = 20_000;
const IN_PROCESS_COLD: usize = 5_000;
/// Written over before each request of the cold table: eight times the L2 cache of a core
/// of the machines this runs on, half their L3 (which other tenants share).
const COLD_BYTES: usize = 16 << 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

const SIGNING_KEY: [u8; 32] = [42; 32];

fn main() {
    let index = index();
    let certs = Certificates::generate(&["127.0.0.1".to_string()]).expect("certificates");
    let ca = certs.ca_pem.clone();
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let identity_port = free_port();
    let identity_addr: std::net::SocketAddr = ([127, 0, 0, 1], identity_port).into();
    let identity_certs = certs.clone();
    let identity_index = index.clone();

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (webhook_index, in_process_index) = (index.clone(), index.clone());
    server_rt.spawn(async move {
        // The identity server on the same runtime: TokenReview reads the same caches.
        let identity_app = identity_router(identity_index);
        let identity_listener = tls::listen(identity_addr).await.expect("listen");
        tokio::spawn(async move {
            tls::serve(
                identity_listener,
                identity_certs.server_config().expect("TLS"),
                // The API server's endpoints (behind mTLS in roster run; the handshake is not
                // what this measures: connections are kept).
                identity_app,
                std::future::pending(),
            )
            .await
            .expect("serve identity")
        });
        let listener = tls::listen(addr).await.expect("listen");
        tls::serve(
            listener,
            certs.server_config().expect("TLS"),
            webhook_router(webhook_index),
            std::future::pending(),
        )
        .await
        .expect("serve");
    });

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = client_rt.block_on(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let client = client(&ca);
        let base = format!("https://127.0.0.1:{port}");
        let identity_base = format!("https://127.0.0.1:{identity_port}");
        let healthz = format!("{base}{}", Scenario::Healthz.path());
        // Warm up connections and caches.
        run(&client, &[(healthz.clone(), Scenario::Healthz)], 200, 1).await;
        let review = format!("{identity_base}{}", Scenario::TokenReviewValid.path());
        run(&client, &[(review, Scenario::TokenReviewValid)], 200, 1).await;
        let scenarios = SCENARIOS;
        // Each row's time is cut into rounds taken in turn with the other rows': a stall of the
        // shared machine then lands in one round of one row, not in a row's whole sample.
        let mut rows: Vec<(Scenario, Result, Option<Result>, Vec<f64>)> = scenarios
            .iter()
            .map(|s| (*s, Result::default(), None, Vec::new()))
            .collect();
        for _ in 0..ROUNDS {
            for (scenario, pooled, pooled_baseline, ratios) in rows.iter_mut() {
                let scenario = *scenario;
                let base = if scenario.identity() {
                    &identity_base
                } else {
                    &base
                };
                let url = format!("{base}{}", scenario.path());
                let mut targets = vec![(url, scenario)];
                // The baseline is the same server's: the identity server's own /healthz for its rows.
                if scenario != Scenario::Healthz {
                    targets.push((
                        format!("{base}{}", Scenario::Healthz.path()),
                        Scenario::Healthz,
                    ));
                }
                let rate = RATE * targets.len() as u64;
                let mut results = run(&client, &targets, rate, SECONDS / ROUNDS)
                    .await
                    .into_iter();
                let (Some(r), baseline) = (results.next(), results.next()) else {
                    unreachable!("one result per target")
                };
                ratios.push(r.p(0.99) / baseline.as_ref().unwrap_or(&r).p(0.99));
                if let Some(b) = baseline {
                    pooled_baseline.get_or_insert_with(Result::default).add(b);
                }
                pooled.add(r);
            }
        }
        rows
    });

    println!(
        "| request ({MEMBERS} Memberships indexed; {RATE} req/s for {SECONDS} s in {ROUNDS} rounds, each row with as many /healthz interleaved; {CONNECTIONS} TLS connections) | sent | wrong or failed answers | p50 ms | p90 ms | p99 ms | max ms | /healthz p99 ms, interleaved | p99 / healthz p99 | median of the rounds' ratios |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (scenario, r, baseline, ratios) in &mut rows {
        let healthz_p99 = baseline.as_ref().unwrap_or(r).p(0.99);
        ratios.sort_by(f64::total_cmp);
        let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} |",
            scenario.label(),
            r.sent,
            r.errors,
            r.p(0.50),
            r.p(0.90),
            r.p(0.99),
            r.p(1.0),
            healthz_p99,
            r.p(0.99) / healthz_p99,
            median
        );
    }
    println!();
    let p = |v: &[f64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    for (heading, n, cold) in [
        (
            format!("in process ({IN_PROCESS} each, taking turns on one thread; no TLS or socket)"),
            IN_PROCESS,
            false,
        ),
        (
            format!(
                "in process, caches cold ({IN_PROCESS_COLD} each, {} MiB written over before each)",
                COLD_BYTES >> 20
            ),
            IN_PROCESS_COLD,
            true,
        ),
    ] {
        println!(
            "| request, {heading} | p50 µs | p99 µs | p50 minus /healthz's, µs | p99 minus /healthz's, µs |"
        );
        println!("|---|---|---|---|---|");
        let times = in_process(in_process_index.clone(), &SCENARIOS, n, cold);
        let healthz = &times[0];
        for (scenario, t) in SCENARIOS.iter().zip(&times) {
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                scenario.label().replace(" (TLS + HTTP baseline)", ""),
                p(t, 0.5),
                p(t, 0.99),
                p(t, 0.5) - p(healthz, 0.5),
                p(t, 0.99) - p(healthz, 0.99)
            );
        }
        println!();
    }
}

const SCENARIOS: [Scenario; 8] = [
    Scenario::Healthz,
    Scenario::InviteAllowed,
    Scenario::DeleteOwnerDenied,
    Scenario::DuplicateEmailDenied,
    Scenario::TokenReviewValid,
    Scenario::TokenReviewForged,
    Scenario::AuthorizeMember,
    Scenario::Transport,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Healthz,
    InviteAllowed,
    DeleteOwnerDenied,
    DuplicateEmailDenied,
    TokenReviewValid,
    TokenReviewForged,
    AuthorizeMember,
    /// A POST of the SubjectAccessReview's body to a route that reads it and answers at once
    /// with bytes of its answer's size: what carrying such a request costs, next to GET /healthz.
    Transport,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Healthz => "GET /healthz (TLS + HTTP baseline)",
            Scenario::InviteAllowed => "admin invites a Member (allowed)",
            Scenario::DeleteOwnerDenied => "delete the owner's Membership (denied)",
            Scenario::DuplicateEmailDenied => "second Membership for an e-mail (denied)",
            Scenario::TokenReviewValid => {
                "TokenReview of a member's token (authenticated; identity server)"
            }
            Scenario::TokenReviewForged => "TokenReview of a forged token (rejected)",
            Scenario::AuthorizeMember => {
                "SubjectAccessReview of a member's request (no opinion; RBAC decides)"
            }
            Scenario::Transport => {
                "POST of the SubjectAccessReview, read and answered at once, not parsed (the transport's share; no target)"
            }
        }
    }

    /// Whether `body` is the answer this request must get.
    fn expected(self, body: &[u8]) -> bool {
        match self {
            Scenario::Healthz => return body == b"ok",
            Scenario::Transport => return body == TRANSPORT_ANSWER.as_bytes(),
            _ => {}
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let (allowed, message) = (
            &v["response"]["allowed"],
            &v["response"]["status"]["message"],
        );
        let says = |m: &Value, what: &str| m.as_str().is_some_and(|m| m.contains(what));
        match self {
            Scenario::Healthz | Scenario::Transport => unreachable!("answered above"),
            Scenario::InviteAllowed => allowed == &Value::Bool(true),
            Scenario::DeleteOwnerDenied => allowed == &Value::Bool(false) && says(message, "owner"),
            Scenario::DuplicateEmailDenied => {
                allowed == &Value::Bool(false) && says(message, "m9999@acme.example")
            }
            Scenario::TokenReviewValid => {
                v["status"]["authenticated"] == Value::Bool(true)
                    && v["status"]["user"]["username"] == "roster:acme:m5@acme.example"
            }
            Scenario::TokenReviewForged => v["status"]["authenticated"] == Value::Bool(false),
            // No opinion: neither allowed nor denied, RBAC decides.
            Scenario::AuthorizeMember => {
                v["status"]["allowed"] == Value::Bool(false)
                    && v["status"]["denied"] != Value::Bool(true)
            }
        }
    }

    fn identity(self) -> bool {
        matches!(
            self,
            Scenario::TokenReviewValid
                | Scenario::TokenReviewForged
                | Scenario::AuthorizeMember
                | Scenario::Transport
        )
    }

    fn path(self) -> &'static str {
        match self {
            Scenario::Healthz => "/healthz",
            Scenario::TokenReviewValid | Scenario::TokenReviewForged => "/authenticate",
            Scenario::AuthorizeMember => "/authorize",
            Scenario::Transport => "/bench/transport",
            _ => "/validate",
        }
    }

    fn body(self) -> Option<Value> {
        let (op, user, object, old) = match self {
            Scenario::Healthz => return None,
            Scenario::AuthorizeMember | Scenario::Transport => {
                return Some(
                    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": {"user": "roster:acme:m5@acme.example", "groups": ["roster:acme", "system:authenticated"],
                        "extra": {"roster.dev/membership": ["m5"], "roster.dev/generation": ["0"]},
                        "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "acme-p5"}}}),
                );
            }
            Scenario::TokenReviewValid | Scenario::TokenReviewForged => {
                let key = if self == Scenario::TokenReviewValid {
                    SIGNING_KEY
                } else {
                    [1; 32]
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs();
                let token = roster::identity::token::Signer::new(&key).sign(
                    &roster::identity::token::Claims {
                        org: "acme".into(),
                        membership: "m5".into(),
                        uid: String::new(),
                        email: "m5@acme.example".into(),
                        generation: 0,
                        iat: now,
                        exp: now + 3600,
                        purpose: roster::identity::token::SESSION.into(),
                        aud: vec![],
                    },
                );
                return Some(
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token.expose()}}),
                );
            }
            Scenario::InviteAllowed => (
                "CREATE",
                "roster:acme:m1@acme.example",
                membership("new", "new@acme.example", OrgRole::Member),
                Value::Null,
            ),
            Scenario::DeleteOwnerDenied => (
                "DELETE",
                "kubernetes-admin",
                Value::Null,
                membership("m0", "m0@acme.example", OrgRole::Admin),
            ),
            Scenario::DuplicateEmailDenied => (
                "CREATE",
                "kubernetes-admin",
                membership("dup", "m9999@acme.example", OrgRole::Member),
                Value::Null,
            ),
        };
        let groups = if user == "kubernetes-admin" {
            json!(["system:masters"])
        } else {
            json!(["system:authenticated"])
        };
        Some(json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "b3c1f1d2-0000-4000-8000-000000000000",
                "kind": {"group": "roster.dev", "version": "v1alpha1", "kind": "Membership"},
                "resource": {"group": "roster.dev", "version": "v1alpha1", "resource": "memberships"},
                "name": "x", "namespace": "acme", "operation": op,
                "userInfo": {"username": user, "groups": groups},
                "object": object, "oldObject": old, "dryRun": false
            }
        }))
    }
}

fn membership(name: &str, email: &str, role: OrgRole) -> Value {
    json!({
        "apiVersion": "roster.dev/v1alpha1", "kind": "Membership",
        "metadata": {"name": name, "namespace": "acme"},
        "spec": {"email": email, "role": role, "projects": [{"name": "p1", "role": "Viewer"}]}
    })
}

/// The admission webhook's router as `roster run` serves it, on `index`.
fn webhook_router(index: StoreIndex) -> axum::Router {
    webhook::router(Arc::new(AppState {
        index,
        policy: Policy::default(),
        ready: Box::new(|| true),
        metrics: roster::metrics::Metrics::new(),
        revocations: None,
    }))
}

/// The identity server's API server endpoints (TokenReview, SubjectAccessReview; behind mTLS
/// in `roster run`), reading the same caches. Needs a runtime (the unused kube client's).
fn identity_router(index: StoreIndex) -> axum::Router {
    let client = kube::Client::try_from(kube::Config::new(
        "https://127.0.0.1:9".parse().expect("url"),
    ))
    .expect("client");
    let (seal_key, _) = roster::identity::seal::Key::generate();
    let identity = roster::identity::service::Identity::new(
        client,
        "roster-system",
        roster::identity::service::Keys {
            seal: seal_key,
            signer: roster::identity::token::Signer::new(&SIGNING_KEY),
        },
        roster::identity::password::Hasher::new(1024, 1, 1, 1).expect("hasher"),
        "https://127.0.0.1".into(),
        None,
        roster::identity::audit::SecurityLog::print_only(),
    )
    .with_credential_cache(index.credentials.clone().expect("credentials").0);
    let router =
        roster::identity::server::api_server_router(Arc::new(roster::identity::server::AppState {
            identity: Arc::new(identity),
            orgs: index.orgs.clone(),
            memberships: index.memberships.clone(),
            revocations: Default::default(),
            limits: roster::identity::limit::Limits::off(),
            audiences: vec![],
            cluster: None,
            emails: index.emails.clone(),
        }));
    // The benchmark's own route beside roster's: the transport row's (see `Scenario::Transport`).
    router.route(
        Scenario::Transport.path(),
        axum::routing::post(|body: Bytes| async move {
            drop(body);
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                TRANSPORT_ANSWER,
            )
        }),
    )
}

/// As long as the SubjectAccessReview's answer (no opinion).
const TRANSPORT_ANSWER: &str = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false}}"#;

/// Each scenario's answer time in process (the router called directly: no TLS, socket or
/// load generator), `n` requests each, the scenarios taking turns request by request on one
/// thread; microseconds, sorted. What the decision itself costs, which the HTTPS rows' p99
/// cannot resolve below the machine's noise. With `cold`, `COLD_BYTES` are written over
/// before each request, out of the timing: the caches then hold none of the request's code
/// or data, as on a machine shared with other work, where a request comes a millisecond
/// after the last one (the HTTPS rows' handlers took what the cold table shows, measured
/// inside the served router, not the warm one).
fn in_process(index: StoreIndex, scenarios: &[Scenario], n: usize, cold: bool) -> Vec<Vec<f64>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (webhook, identity) = (webhook_router(index.clone()), identity_router(index));
        let requests: Vec<(axum::Router, Scenario, Option<Bytes>)> = scenarios
            .iter()
            .map(|s| {
                let app = if s.identity() { &identity } else { &webhook };
                (
                    app.clone(),
                    *s,
                    s.body().map(|b| Bytes::from(b.to_string())),
                )
            })
            .collect();
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(n); scenarios.len()];
        let mut evict = vec![0u8; if cold { COLD_BYTES } else { 0 }];
        for i in 0..n + n / 10 {
            for (k, (app, scenario, body)) in requests.iter().enumerate() {
                let req = match body {
                    None => http::Request::get(scenario.path()).body(axum::body::Body::empty()),
                    Some(b) => http::Request::post(scenario.path())
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(b.clone())),
                }
                .expect("request");
                // One write per cache line.
                for (j, b) in evict.iter_mut().enumerate().step_by(64) {
                    *b = b.wrapping_add(j as u8);
                }
                std::hint::black_box(&evict);
                let started = Instant::now();
                let Ok(resp) = tower::ServiceExt::oneshot(app.clone(), req).await;
                let answer = resp.into_body().collect().await.expect("body").to_bytes();
                let took = started.elapsed().as_secs_f64() * 1e6;
                assert!(scenario.expected(&answer), "{scenario:?}: {answer:?}");
                // The first tenth warms up.
                if i >= n / 10 {
                    times[k].push(took);
                }
            }
        }
        for t in &mut times {
            t.sort_by(f64::total_cmp);
        }
        times
    })
}

/// The organization acme: owner m0, 20,000 members (m1 Admin of p1), 20 projects.
fn index() -> StoreIndex {
    let mut orgs = Writer::<Organization>::default();
    let mut projects = Writer::<Project>::default();
    // As `roster run` has it: compact Memberships, and by e-mail from the same events.
    let (memberships, emails, mut members) = roster::cache::members();
    let mut credentials = Writer::<roster::cache::Credential>::default();
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
    for p in 0..20 {
        let mut project = Project::new(
            &format!("p{p}"),
            ProjectSpec {
                display_name: None,
                namespace: None,
                namespace_deletion: Default::default(),
                adopt_existing_namespace: false,
            },
        );
        project.metadata.namespace = Some("acme".into());
        projects.apply_watcher_event(&Event::Apply(project));
    }
    for i in 0..MEMBERS {
        let role = if i < 2 {
            OrgRole::Admin
        } else {
            OrgRole::Member
        };
        let grant = ProjectGrant {
            name: format!("p{}", i % 20),
            role: if i == 1 {
                ProjectRole::Admin
            } else {
                ProjectRole::Viewer
            },
        };
        let mut m = Membership::new(
            &format!("m{i}"),
            MembershipSpec {
                email: format!("m{i}@acme.example"),
                display_name: None,
                role: Some(role),
                projects: vec![grant],
                disabled: false,
                mfa: None,
                expires_at: None,
            },
        );
        m.metadata.namespace = Some("acme".into());
        m.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("ts")));
        members.apply(Event::Apply(m));
        let email = format!("m{i}@acme.example");
        let record = roster::identity::store::Record {
            email: email.clone(),
            accepted_at: Some(1),
            ..Default::default()
        };
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(roster::identity::store::Store::secret_name("acme", &email)),
                namespace: Some("roster-system".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "record".to_string(),
                    k8s_openapi::ByteString(serde_json::to_vec(&record).expect("json")),
                )]
                .into(),
            ),
            ..Default::default()
        };
        credentials.apply_watcher_event(&Event::Apply(roster::cache::Credential::of(&secret)));
    }
    StoreIndex {
        orgs: orgs.as_reader(),
        projects: projects.as_reader(),
        memberships: memberships.clone(),
        emails: Some(emails),
        credentials: Some((credentials.as_reader(), "roster-system".into())),
    }
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client(ca_pem: &str) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("ca");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNECTIONS)
        .build(connector)
}

#[derive(Default)]
struct Result {
    sent: usize,
    errors: usize,
    latencies_ms: Vec<f64>,
}

impl Result {
    /// Another round's requests, pooled with these.
    fn add(&mut self, other: Result) {
        self.sent += other.sent;
        self.errors += other.errors;
        self.latencies_ms.extend(other.latencies_ms);
        self.latencies_ms.sort_by(f64::total_cmp);
    }

    fn p(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ms.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_ms[i]
    }
}

/// Sends `rate` requests a second for `seconds`, the i-th to `targets[i % n]`; one result per
/// target.
async fn run(
    client: &HttpsClient,
    targets: &[(String, Scenario)],
    rate: u64,
    seconds: u64,
) -> Vec<Result> {
    let targets: Arc<Vec<(String, Scenario, Option<Bytes>)>> = Arc::new(
        targets
            .iter()
            .map(|(url, s)| {
                (
                    url.clone(),
                    *s,
                    s.body().map(|b| Bytes::from(b.to_string())),
                )
            })
            .collect(),
    );
    let n = targets.len();
    let total = (rate * seconds) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let limit = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    // A thread of its own paces the sends: the OS sleep wakes within tens of microseconds,
    // where the runtime's 1 ms timer would add up to a millisecond of the load generator's
    // own to every request. Latency counts from the scheduled send time, not from when a
    // connection came free: a stall delays every request behind it, and each is charged for
    // it (no coordinated omission).
    let (handle, client) = (tokio::runtime::Handle::current(), client.clone());
    let pacer = std::thread::spawn(move || {
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let scheduled = start + interval * i as u32;
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (client, limit) = (client.clone(), limit.clone());
            let (url, scenario, body) = targets[i % n].clone();
            tasks.push(handle.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("semaphore");
                let req = match body {
                    None => hyper::Request::get(url).body(Full::new(Bytes::new())),
                    Some(b) => hyper::Request::post(url)
                        .header("content-type", "application/json")
                        .body(Full::new(b)),
                }
                .expect("request");
                let answer = match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.into_body().collect().await {
                            Ok(b) if status.is_success() => Some(b.to_bytes()),
                            _ => None,
                        }
                    }
                    Err(_) => None,
                };
                // The answer is in: what follows is the load generator's own work, not the
                // server's latency (parsing a JSON answer on the client's one thread was
                // charged to the JSON rows and not to /healthz's).
                let latency = scheduled.elapsed();
                // Every answer is checked: a wrong allow or deny is an error, not a fast
                // success.
                let ok = answer.is_some_and(|b| scenario.expected(&b));
                (ok, latency)
            }));
        }
        tasks
    });
    let tasks = tokio::task::spawn_blocking(move || pacer.join().expect("the pacing thread"))
        .await
        .expect("join");
    let mut results: Vec<Result> = (0..n)
        .map(|k| Result {
            sent: (k..total).step_by(n).count(),
            errors: 0,
            latencies_ms: Vec::with_capacity(total / n + 1),
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = &mut results[i % n];
        match t.await {
            Ok((true, d)) => r.latencies_ms.push(d.as_secs_f64() * 1000.0),
            _ => r.errors += 1,
        }
    }
    for r in &mut results {
        r.latencies_ms.sort_by(f64::total_cmp);
    }
    results
}
