//! Table queries over HTTP, like Kafka Streams' interactive queries and Faust's table views:
//!
//! - `GET /tables`: every table with its kind, source topic and the keys this node holds per
//!   partition.
//! - `GET /tables/{table}/{key}`: the key's value (a windowed table: its windows). The node that
//!   holds the key's partition answers from its store; any other node forwards the request to
//!   it (members announce their web address on the members topic) and relays the answer. No
//!   live owner, or an owner that does not answer: 503 with `Retry-After`.
//! - `GET /tables/{table}?from=&limit=`: a page of the keys this node holds, in key order;
//!   `next` is the `from` of the following page.
//!
//! A key in a path is JSON (`42`, `"42"`, `{"id":1}`); text that is not JSON is taken as a
//! string, so `/tables/page_counts/home` works. Its partition is the one Kafka's partitioner
//! gives the key encoded with the source topic's key codec: the table is assumed keyed like its
//! topic, as a `group_by` makes it. Answers hold committed state only (see
//! `faust_actors::state::query`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use faust_actors::io::members::Directory;
use faust_actors::runtime::topology::Topology as Runtime;
use faust_actors::state::query::Query;
use faust_actors::{Metrics, Partitioner, Store, TableSpec};
use serde_json::{json, Value};

/// Marks a request one node forwarded to another (which must then answer, not forward).
const FORWARDED: &str = "x-faust-forwarded-by";
/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest page.
const MAX_LIMIT: usize = 10_000;

/// What the query handlers read: set once the runtime has started.
pub(crate) struct Queries {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) store: Store,
    pub(crate) partitioner: Partitioner,
    pub(crate) metrics: Metrics,
    /// The members' view (`None`: the app has no tables, so no members topic).
    pub(crate) directory: Option<Directory>,
}

/// Shared between the web server (started first) and the node (which fills it in).
pub(crate) type Slot = Arc<OnceLock<Queries>>;

/// A table of the app: its spec and source topic with that topic's partition count.
struct Found<'a> {
    spec: &'a TableSpec,
    topic: &'a str,
    partitions: i32,
}

impl Queries {
    fn table(&self, name: &str) -> Option<Found<'_>> {
        self.runtime.sources.iter().find_map(|(topic, source)| {
            let spec = source.tables.iter().find(|t| &*t.name == name)?;
            Some(Found {
                spec,
                topic,
                partitions: source.partitions,
            })
        })
    }

    fn names(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .runtime
            .sources
            .values()
            .flat_map(|s| s.tables.iter().map(|t| t.name.to_string()))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    fn held(&self, topic: &str, partitions: i32) -> Vec<i32> {
        let status = self.metrics.status();
        (0..partitions)
            .filter(|p| status.holds(topic, *p))
            .collect()
    }
}

fn error(status: actix_web::http::StatusCode, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

fn unavailable(message: String) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .json(json!({ "error": message }))
}

/// The answer while the node is starting (the slot is still empty).
fn starting() -> HttpResponse {
    unavailable("the node is starting; its tables are not open yet".into())
}

/// A key from its text in a path: JSON, or else a string.
fn key_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Parameters of `GET /tables`.
#[derive(serde::Deserialize)]
pub(crate) struct Scope {
    /// `local`: this node's tables only (what the nodes ask each other).
    scope: Option<String>,
}

/// `GET /tables`: this node's tables and, unless `scope=local`, the keys every live member
/// holds per partition (`cluster`, asked of each member; `unreachable` lists who did not
/// answer).
pub(crate) async fn list(slot: web::Data<Slot>, scope: web::Query<Scope>) -> HttpResponse {
    let Some(q) = slot.get() else {
        return starting();
    };
    let mut body = local_tables(q);
    if scope.scope.as_deref() == Some("local") {
        return HttpResponse::Ok().json(body);
    }
    let mut answers = vec![body.clone()];
    let mut unreachable = Vec::new();
    let others = q
        .directory
        .as_ref()
        .map(Directory::others)
        .unwrap_or_default();
    for other in others {
        let Some(web) = other.web else {
            unreachable.push(json!(other.node));
            continue;
        };
        let client = awc::Client::builder().timeout(FORWARD_TIMEOUT).finish();
        let url = format!("http://{web}/tables?scope=local");
        let answer = match client.get(&url).send().await {
            Ok(mut r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        match answer {
            Some(a) => answers.push(a),
            None => unreachable.push(json!(other.node)),
        }
    }
    if let Some(tables) = body["tables"].as_array_mut() {
        for table in tables {
            let mut cluster = serde_json::Map::new();
            for answer in &answers {
                let theirs = answer["tables"]
                    .as_array()
                    .and_then(|ts| ts.iter().find(|t| t["name"] == table["name"]));
                let Some(counts) = theirs.and_then(|t| t["keys_by_partition"].as_object()) else {
                    continue;
                };
                for (p, n) in counts {
                    cluster.insert(p.clone(), json!({ "node": answer["node"], "keys": n }));
                }
            }
            table["cluster"] = Value::Object(cluster);
        }
    }
    body["unreachable"] = json!(unreachable);
    HttpResponse::Ok().json(body)
}

/// This node's tables: kind, topic, codecs, and the keys it holds per partition.
fn local_tables(q: &Queries) -> Value {
    let mut tables = Vec::new();
    for name in q.names() {
        let Some(t) = q.table(&name) else { continue };
        let query = Query::new(&q.store, t.spec);
        let kind = match (t.spec.global, t.spec.window.is_some()) {
            (true, _) => "global",
            (false, true) => "windowed",
            (false, false) => "table",
        };
        let mut keys = BTreeMap::new();
        let parts = match t.spec.global {
            true => vec![],
            false => q.held(t.topic, t.partitions),
        };
        for p in parts {
            match query.count(t.topic, p) {
                Ok(n) => keys.insert(p.to_string(), json!(n)),
                Err(e) => keys.insert(p.to_string(), json!(e.to_string())),
            };
        }
        tables.push(json!({
            "name": name,
            "kind": kind,
            "topic": t.topic,
            "partitions": t.partitions,
            "key_codec": t.spec.key_codec.name(),
            "value_codec": t.spec.value_codec.name(),
            "keys_by_partition": keys,
        }));
    }
    let node = q.directory.as_ref().map(|d| d.node().to_owned());
    json!({ "node": node, "tables": tables })
}

/// Paging parameters of `GET /tables/{table}`.
#[derive(serde::Deserialize)]
pub(crate) struct Page {
    from: Option<String>,
    limit: Option<usize>,
}

/// `GET /tables/{table}?from=&limit=`.
pub(crate) async fn page(
    slot: web::Data<Slot>,
    table: web::Path<String>,
    params: web::Query<Page>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(q) = slot.get() else {
        return starting();
    };
    let Some(t) = q.table(&table) else {
        let message = format!("no table `{table}` in this app (tables: {:?})", q.names());
        return error(StatusCode::NOT_FOUND, message);
    };
    let query = Query::new(&q.store, t.spec);
    let from = match params.from.as_deref().map(|f| query.key_bytes(&key_of(f))) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("from: {e}")),
    };
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let parts = match t.spec.global {
        true => vec![0],
        false => q.held(t.topic, t.partitions),
    };
    match query.page(t.topic, &parts, from.as_deref(), limit) {
        Ok((entries, next)) => {
            let next = next.and_then(|n| t.spec.key_codec.decode::<Value>("table key", &n).ok());
            HttpResponse::Ok().json(json!({
                "table": t.spec.name.as_ref(),
                "partitions": parts,
                "entries": entries,
                "next": next,
            }))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /tables/{table}/{key}`.
pub(crate) async fn get(
    slot: web::Data<Slot>,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(q) = slot.get() else {
        return starting();
    };
    let (table, text) = path.into_inner();
    let Some(t) = q.table(&table) else {
        let message = format!("no table `{table}` in this app (tables: {:?})", q.names());
        return error(StatusCode::NOT_FOUND, message);
    };
    let key = key_of(&text);
    let query = Query::new(&q.store, t.spec);
    if let Err(e) = query.key_bytes(&key) {
        return error(StatusCode::BAD_REQUEST, format!("key {key}: {e}"));
    }
    let partition = if t.spec.global {
        0
    } else {
        let (codec, _) = q.runtime.codecs.get(t.topic);
        match codec.encode("key", &key) {
            Ok(bytes) => q.partitioner.partition(&bytes, t.partitions),
            Err(e) => {
                let message = format!("key {key} does not encode for topic `{}`: {e}", t.topic);
                return error(StatusCode::BAD_REQUEST, message);
            }
        }
    };
    if t.spec.global || q.metrics.status().holds(t.topic, partition) {
        return answer(q, &t, &query, partition, &key);
    }
    if let Some(by) = request.headers().get(FORWARDED) {
        let by = by.to_str().unwrap_or("?");
        return unavailable(format!(
            "forwarded by {by}, but this node does not hold partition {partition} of `{}` \
             either (a rebalance is moving it)",
            t.topic
        ));
    }
    let owners = q
        .directory
        .as_ref()
        .map(|d| d.owners(&(t.topic.to_owned(), partition)));
    let Some(owner) = owners.unwrap_or_default().into_iter().next() else {
        return unavailable(format!(
            "partition {partition} of `{}` has no live owner right now (a rebalance, or its \
             node is gone); try again",
            t.topic
        ));
    };
    let Some(web) = owner.web else {
        return unavailable(format!(
            "partition {partition} of `{}` is held by node {}, which serves no web address",
            t.topic, owner.node
        ));
    };
    let me = q.directory.as_ref().map_or("?", |d| d.node()).to_owned();
    forward(&web, request.uri().path(), &me, &owner.node).await
}

/// The local answer for a partition this node holds.
fn answer(
    q: &Queries,
    t: &Found<'_>,
    query: &Query<'_>,
    partition: i32,
    key: &Value,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let node = q.directory.as_ref().map(|d| d.node().to_owned());
    let base =
        json!({ "table": t.spec.name.as_ref(), "key": key, "partition": partition, "node": node });
    let mut body = base;
    if t.spec.window.is_some() {
        return match query.windows(t.topic, partition, key) {
            Ok(w) if w.is_empty() => no_value(body),
            Ok(w) => {
                body["windows"] = json!(w);
                HttpResponse::Ok().json(body)
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    match query.get(t.topic, partition, key) {
        Ok(Some(v)) => {
            body["value"] = v;
            HttpResponse::Ok().json(body)
        }
        Ok(None) => no_value(body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn no_value(mut body: Value) -> HttpResponse {
    body["error"] = json!("no value for this key");
    HttpResponse::NotFound().json(body)
}

/// Relays the request to the owner's web server.
async fn forward(web: &str, path: &str, me: &str, owner: &str) -> HttpResponse {
    let url = format!("http://{web}{path}");
    let client = awc::Client::builder().timeout(FORWARD_TIMEOUT).finish();
    let sent = client.get(&url).insert_header((FORWARDED, me)).send().await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => {
            return unavailable(format!(
                "the owner, node {owner} at {web}, did not answer: {e}"
            ))
        }
    };
    match response.body().await {
        Ok(body) => HttpResponse::build(response.status())
            .content_type("application/json")
            .insert_header(("x-faust-answered-by", owner))
            .body(body),
        Err(e) => unavailable(format!("the owner, node {owner} at {web}, broke off: {e}")),
    }
}
