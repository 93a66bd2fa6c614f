//! The node's HTTP server (actix-web, on the node's actix runtime): `GET /metrics` in the
//! Prometheus text format, `GET /healthz` and `GET /readyz` (both read the node's typed
//! [`Status`](faust_actors::metrics::status::Status), not the gauges that report it), and the
//! table queries under `/tables` (see `queries`).

use std::net::SocketAddr;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, HttpResponse, HttpServer};
use faust_actors::metrics::status::Fatal;
use faust_actors::Metrics;

use crate::error::Error;

async fn metrics(m: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(m.encode())
}

/// The store's directory, for `/healthz`.
struct Store(std::path::PathBuf);

fn answer(ok: bool, body: serde_json::Value) -> HttpResponse {
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// 200 while the consumer serves its group, reaches a broker, the transactional producer (if
/// any) works, the node was not frozen past its session timeout without hearing from the
/// group since, and no partition is halted by the `stop` error policy or stalled (records
/// waiting, offset not moving for `processing.stall_intervals` commit intervals); 503
/// otherwise. The body says which.
async fn healthz(m: web::Data<Metrics>, path: web::Data<Store>) -> HttpResponse {
    let (ok, body) = health(&m, &path);
    answer(ok, body)
}

/// The health verdict and its reasons (see `healthz`).
fn health(m: &Metrics, path: &Store) -> (bool, serde_json::Value) {
    let s = m.status();
    let (up, broker, producer) = (s.consumer_up(), s.broker_up(), !s.producer_broken());
    let active = s.active();
    let (halted, stalled) = (s.halted(), s.stalled());
    let member = !s.suspended();
    let store = s.fatal() != Some(Fatal::StoreFailed);
    let ok = up && broker && producer && member && store && halted.is_empty() && stalled.is_empty();
    (
        ok,
        serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "consumer": if up { "up" } else { "down" },
            "broker": if broker { "up" } else { "down" },
            "producer": if producer { "up" } else { "rebuilding" },
            "membership": if member { "held" } else { "uncertain" },
            "store": if store { "ok".to_owned() } else { format!("cannot write: {}", path.0.display()) },
            "active_partitions": active,
            "halted_partitions": halted,
            "stalled_partitions": stalled,
        }),
    )
}

/// What the node is doing, for `faust-node status`: its health (as `/healthz`), each active
/// partition with its lag in records and seconds, the age of its last commit and whether it
/// is halted or stalled, the standbys it keeps, and its event, commit and rebalance counts.
/// 200 when healthy, 503 otherwise (same body).
async fn status(m: web::Data<Metrics>, path: web::Data<Store>) -> HttpResponse {
    let (ok, health) = health(&m, &path);
    let s = m.status();
    let (halted, stalled) = (s.halted(), s.stalled());
    let partitions: Vec<serde_json::Value> = s
        .held()
        .into_iter()
        .map(|(topic, p)| {
            let labels = [&*topic, &p.to_string()];
            let name = format!("{topic}[{p}]");
            serde_json::json!({
                "topic": &*topic,
                "partition": p,
                "lag_records": m.partition_lag_records.with_label_values(&labels).get(),
                "lag_seconds": m.partition_lag_seconds.with_label_values(&labels).get(),
                "commit_age_seconds": m.partition_commit_age_seconds.with_label_values(&labels).get(),
                "halted": halted.contains(&name),
                "stalled": stalled.contains(&name),
            })
        })
        .collect();
    let rebalances = |kind: &str| m.rebalances_total.with_label_values(&[kind]).get();
    answer(
        ok,
        serde_json::json!({
            "health": health,
            "active": partitions,
            "standby_partitions": m.assigned_partitions.with_label_values(&["standby"]).get(),
            "partitions_not_ready": s.not_ready(),
            "events_total": m.all_events(),
            "commits_total": m.commits_total.get(),
            "commit_failures_total": m.commit_failures_total.get(),
            "rebalances": { "assign": rebalances("assign"), "revoke": rebalances("revoke") },
        }),
    )
}

/// 200 when the node serves its group, reaches a broker, and every partition assigned to it
/// is restored and consuming; 503 while any is restoring or joining (or the node is
/// unhealthy for one of those reasons). For load balancers and rolling restarts.
async fn readyz(m: web::Data<Metrics>) -> HttpResponse {
    let s = m.status();
    let (up, broker, producer) = (s.consumer_up(), s.broker_up(), !s.producer_broken());
    let not_ready = s.not_ready();
    let ok = up && broker && producer && not_ready == 0;
    answer(
        ok,
        serde_json::json!({
            "status": if ok { "ready" } else { "not_ready" },
            "consumer": if up { "up" } else { "down" },
            "broker": if broker { "up" } else { "down" },
            "producer": if producer { "up" } else { "rebuilding" },
            "partitions_not_ready": not_ready,
        }),
    )
}

/// A started server: the future to spawn, its handle and the addresses it listens on.
pub(crate) struct Web {
    pub(crate) server: Server,
    pub(crate) handle: ServerHandle,
    pub(crate) addrs: Vec<SocketAddr>,
}

/// Binds `bind` and builds the server (spawn `server` to serve).
///
/// # Errors
/// [`Error::WebBind`] when the address cannot be bound.
pub(crate) fn start(
    bind: &str,
    metrics: Metrics,
    store: &std::path::Path,
    tables: crate::queries::Slot,
) -> Result<Web, Error> {
    let data = web::Data::new(metrics);
    let store = web::Data::new(Store(store.to_path_buf()));
    let tables = web::Data::new(tables);
    let http = HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(store.clone())
            .app_data(tables.clone())
            .route("/metrics", web::get().to(self::metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/status", web::get().to(status))
            .route("/tables", web::get().to(crate::queries::list))
            .route("/tables/{table}", web::get().to(crate::queries::page))
            .route("/tables/{table}/{key}", web::get().to(crate::queries::get))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .bind(bind)
    .map_err(|source| Error::WebBind {
        bind: bind.into(),
        source,
    })?;
    let addrs = http.addrs();
    let server = http.run();
    Ok(Web {
        handle: server.handle(),
        server,
        addrs,
    })
}
