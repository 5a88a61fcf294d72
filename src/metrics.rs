//! What keyward counts for Prometheus, served at `GET /metrics` (OpenMetrics text): requests by
//! method, route template and status with their latency, verification outcomes by code, and, read
//! when scraped, the verify engine's cache and lookups and the database pool. Labels are route
//! templates, methods and codes from fixed sets: never a raw path, a key id or a tenant id, so
//! no caller can grow the number of series.
//!
//! Each app has its own registry (not a process-wide one), so that replicas in one process (the
//! tests, the bench) each report their own.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    /// The route template (`/v1/tenants/{tenant_id}/keys`), or `unmatched`.
    route: String,
    status: u16,
}

/// A request's labels for its latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// What the engine and the pool report when scraped.
pub struct Readings {
    pub cached_by_hash: u64,
    pub cached_by_id: u64,
    pub lookup_batches: u64,
    pub dropped_outcomes: u64,
    pub listening: bool,
    pub pool_size: u32,
    pub pool_idle: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    verifications: Family<CodeLabels, Counter>,
    cached_by_hash: Gauge,
    cached_by_id: Gauge,
    lookup_batches: Gauge,
    dropped_outcomes: Gauge,
    listening: Gauge,
    pool_size: Gauge,
    pool_idle: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The methods a request is counted under; any other is `other`.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The label of a request's method.
pub fn method_label(method: &str) -> &'static str {
    METHODS.into_iter().find(|known| *known == method).unwrap_or("other")
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyward");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to about 3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the handler returned its response)",
            durations.clone(),
        );
        let verifications = Family::<CodeLabels, Counter>::default();
        registry.register(
            "verifications",
            "Verifications of keys and signed requests, by the code they answered",
            verifications.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let cached_by_hash = gauge(
            &mut registry,
            "cache_keys_by_hash",
            "Keys the verify cache holds by token hash",
        );
        let cached_by_id = gauge(
            &mut registry,
            "cache_keys_by_id",
            "Keys the verify cache holds by key id",
        );
        let lookup_batches = gauge(
            &mut registry,
            "lookup_batches",
            "Statements that read cache misses by token hash, each a batch (a running total)",
        );
        let dropped_outcomes = gauge(
            &mut registry,
            "dropped_outcomes",
            "Verification outcomes left uncounted because the tallies were full (a running total)",
        );
        let listening = gauge(
            &mut registry,
            "change_listener_up",
            "1 when the change listener is subscribed and knows every key",
        );
        let pool_size = gauge(
            &mut registry,
            "db_pool_connections",
            "Database connections open in the pool",
        );
        let pool_idle = gauge(
            &mut registry,
            "db_pool_idle_connections",
            "Database connections idle in the pool",
        );
        Metrics {
            registry,
            requests,
            durations,
            verifications,
            cached_by_hash,
            cached_by_id,
            lookup_batches,
            dropped_outcomes,
            listening,
            pool_size,
            pool_idle,
        }
    }

    /// Counts an answered request: `route` is its template (`None`: no route matched).
    pub fn request(&self, method: &'static str, route: Option<&str>, status: u16, seconds: f64) {
        let route = route.unwrap_or("unmatched").to_owned();
        self.durations
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels { method, route, status })
            .inc();
    }

    /// Counts a verification's outcome.
    pub fn verification(&self, code: &'static str) {
        self.verifications.get_or_create(&CodeLabels { code }).inc();
    }

    /// Everything, in the OpenMetrics text format, with `readings` as they are now.
    pub fn render(&self, readings: Readings) -> String {
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.cached_by_hash.set(as_gauge(readings.cached_by_hash));
        self.cached_by_id.set(as_gauge(readings.cached_by_id));
        self.lookup_batches.set(as_gauge(readings.lookup_batches));
        self.dropped_outcomes.set(as_gauge(readings.dropped_outcomes));
        self.listening.set(i64::from(readings.listening));
        self.pool_size.set(i64::from(readings.pool_size));
        self.pool_idle.set(as_gauge(readings.pool_idle));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::warn!("could not encode the metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_outside_the_known_ones_is_other() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(method_label("get"), "other");
    }
}
