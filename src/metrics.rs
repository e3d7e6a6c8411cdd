//! Prometheus metrics and the health endpoints, on a plain-HTTP port of their own
//! (`--metrics-addr`): `/metrics`, `/healthz` (the process runs), `/readyz` (caches loaded).
//! Error and denial counters are labelled with the same stable `reason()` that Events and
//! conditions carry, so an alert names the same thing `kubectl describe` shows.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `ok` / `error` for reconciles, `allow` / `deny` for admissions.
    pub result: String,
    /// The stable PascalCase reason (`Converged`, `Forbidden`, `OwnerMembershipProtected`, ...).
    pub reason: String,
}

pub struct Metrics {
    pub reconciles: Family<Outcome, Counter>,
    pub reconcile_seconds: Histogram,
    /// API writes the controller made (a steady state adds none).
    pub writes: Counter,
    pub admissions: Family<Outcome, Counter>,
    pub admission_seconds: Histogram,
    /// 1 while this replica holds the lease (reconciles), 0 otherwise.
    pub leader: Gauge,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("roster");
        let reconciles = Family::<Outcome, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let writes = Counter::default();
        let admissions = Family::<Outcome, Counter>::default();
        let admission_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 14));
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the lease and reconciles",
            leader.clone(),
        );
        registry.register(
            "reconciles",
            "Organization reconciles by result and reason",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time to observe, plan and apply one organization",
            reconcile_seconds.clone(),
        );
        registry.register(
            "writes",
            "Writes the controller made to the API server",
            writes.clone(),
        );
        registry.register(
            "admissions",
            "Admission decisions by result and reason",
            admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to decide one admission request",
            admission_seconds.clone(),
        );
        Arc::new(Metrics {
            reconciles,
            reconcile_seconds,
            writes,
            admissions,
            admission_seconds,
            leader,
            registry,
        })
    }

    pub fn reconciled(&self, ok: bool, reason: &str, took: Duration, writes: usize) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&Outcome {
                result: result.into(),
                reason: reason.into(),
            })
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
        self.writes.inc_by(writes as u64);
    }

    pub fn admitted(&self, allowed: bool, reason: &str, took: Duration) {
        let result = if allowed { "allow" } else { "deny" };
        self.admissions
            .get_or_create(&Outcome {
                result: result.into(),
                reason: reason.into(),
            })
            .inc();
        self.admission_seconds.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

struct Health {
    metrics: Arc<Metrics>,
    ready: Box<dyn Fn() -> bool + Send + Sync>,
}

pub fn router(metrics: Arc<Metrics>, ready: Box<dyn Fn() -> bool + Send + Sync>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Health { metrics, ready }))
}

async fn scrape(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    if (h.ready)() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not loaded yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    #[test]
    fn counters_carry_the_reasons() {
        let m = Metrics::new();
        m.reconciled(true, "Converged", Duration::from_millis(3), 4);
        m.reconciled(false, "Forbidden", Duration::from_millis(1), 0);
        m.admitted(
            false,
            "OwnerMembershipProtected",
            Duration::from_micros(200),
        );
        let text = m.encode();
        for line in [
            r#"roster_reconciles_total{result="ok",reason="Converged"} 1"#,
            r#"roster_reconciles_total{result="error",reason="Forbidden"} 1"#,
            r#"roster_writes_total 4"#,
            r#"roster_admissions_total{result="deny",reason="OwnerMembershipProtected"} 1"#,
            "roster_admission_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn readiness_follows_the_caches() {
        for (ready, status) in [(true, 200), (false, 503)] {
            let app = router(Metrics::new(), Box::new(move || ready));
            let resp = app
                .oneshot(
                    axum::http::Request::get("/readyz")
                        .body(Body::empty())
                        .expect("req"),
                )
                .await
                .expect("resp");
            assert_eq!(resp.status(), status);
        }
        let app = router(Metrics::new(), Box::new(|| true));
        let resp = app
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("resp");
        let body = String::from_utf8(
            to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body")
                .to_vec(),
        )
        .expect("utf8");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
