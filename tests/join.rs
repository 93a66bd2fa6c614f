//! The co-partitioned join (`examples/join.rs`, included here for its agents): orders keyed by
//! customer id, joined with the customers table another agent fills from its own topic. The
//! two topics are one task group: partition `p` of both is processed by one actor that owns
//! shard `p` of the table, on one node through every rebalance.
//!
//! - Both brokers, one node: every order is emitted once, with its customer (or `null` for an
//!   unknown one), joined on its own partition; the consumer group commits both topics; a
//!   second node with an empty store restores the table from its changelog and joins the same.
//! - Real Kafka, three node processes, one SIGKILLed mid-stream, at least once and exactly
//!   once: every output was joined on its own partition (the one murmur2 gives its key) and
//!   carries its customer; at least once every order is emitted, exactly once each exactly once.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/join.rs"]
mod join;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::nodes::{Nodes, NODE_CONFIG_VAR};
use common::{committed, http_get, logs, unique, wait_for, Kafka, PARTITIONS};
use faust::config::{AgentConfig, Config, Guarantee};
use faust::Partitioner;
use join::{Customer, JoinedOrder, Order};

const WAIT: Duration = Duration::from_secs(120);

/// The topics of one run: customers (the table's source), orders (`kafka.topic`), the joined
/// orders (`kafka.out`).
struct Setup {
    kafka: Kafka,
    customers: String,
    group: String,
}

impl Setup {
    fn new(test: &str) -> Self {
        Self::on(Kafka::new(test), test)
    }

    fn on(kafka: Kafka, test: &str) -> Self {
        let customers = unique(&format!("{test}-customers"));
        kafka.create_topic(&customers, PARTITIONS);
        let group = unique(test);
        kafka.prepare_changelog(&group, "customers");
        Setup {
            kafka,
            customers,
            group,
        }
    }

    fn config(&self, store: &Path) -> Config {
        let mut config = self.kafka.config(store, &self.group);
        config.agents.clear();
        let mut topic = config.topics[&self.kafka.topic].clone();
        topic.partitions = PARTITIONS;
        config.topics.insert(self.customers.clone(), topic);
        let agent = |topic: &str, sinks: Vec<String>| AgentConfig {
            topics: Some(vec![topic.to_owned()]),
            sinks,
            ..AgentConfig::default()
        };
        let customers = agent(&self.customers, Vec::new());
        config.agents.insert("customers".into(), customers);
        let orders = agent(&self.kafka.topic, vec![self.kafka.out.clone()]);
        config.agents.insert("orders".into(), orders);
        config
    }

    /// Writes customers `c-0` .. `c-{n-1}`, keyed by id.
    fn write_customers(&self, n: usize) -> HashMap<String, Customer> {
        let customers: HashMap<String, Customer> = (0..n)
            .map(|i| {
                let c = Customer {
                    name: format!("customer {i}"),
                    tier: if i % 2 == 0 { "gold" } else { "silver" }.into(),
                };
                (format!("c-{i}"), c)
            })
            .collect();
        let encoded: Vec<(String, Vec<u8>)> = customers
            .iter()
            .map(|(id, c)| (id.clone(), serde_json::to_vec(c).unwrap()))
            .collect();
        let records = encoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice(), None));
        self.kafka.produce_to(&self.customers, records);
        customers
    }

    /// Writes orders `o-{from}` .. keyed by customer `c-{i % of}`; returns them by order id.
    fn write_orders(&self, from: u64, n: u64, of: u64) -> HashMap<String, (String, Order)> {
        let orders: Vec<(String, Order)> = (from..from + n)
            .map(|i| {
                let o = Order {
                    order_id: format!("o-{i}"),
                    amount: 100 + i,
                };
                (format!("c-{}", i % of), o)
            })
            .collect();
        let encoded: Vec<(String, Vec<u8>)> = orders
            .iter()
            .map(|(k, o)| (k.clone(), serde_json::to_vec(o).unwrap()))
            .collect();
        self.kafka
            .produce(encoded.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        orders
            .into_iter()
            .map(|(c, o)| (o.order_id.clone(), (c, o)))
            .collect()
    }

    fn committed_total(&self, topic: &str) -> i64 {
        committed(&self.kafka.bootstrap(), &self.group, topic)
            .values()
            .sum()
    }

    /// Every joined order emitted, by order id, after checking each was joined on its own
    /// partition, the one its key goes to, with its customer.
    fn joined(&self, known: &HashMap<String, Customer>) -> HashMap<String, Vec<JoinedOrder>> {
        let mut out: HashMap<String, Vec<JoinedOrder>> = HashMap::new();
        for r in self.kafka.records(&self.kafka.out) {
            let j: JoinedOrder = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
            let key = j.customer_id.as_bytes();
            assert_eq!(r.key.as_deref(), Some(key));
            let home = Partitioner::Murmur2.partition(key, PARTITIONS);
            assert_eq!(
                (j.partition, r.partition),
                (home, home),
                "{} joined on partition {}, emitted to {}: its key's partition is {home}",
                j.order.order_id,
                j.partition,
                r.partition
            );
            assert_eq!(
                j.customer,
                known.get(&j.customer_id).cloned(),
                "{}: its customer, from its own shard, or none",
                j.order.order_id
            );
            out.entry(j.order.order_id.clone()).or_default().push(j);
        }
        out
    }
}

fn table_holds(web: std::net::SocketAddr, known: &HashMap<String, Customer>) -> bool {
    known.keys().all(|id| {
        http_get(web, &format!("/tables/customers/{id}"))
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
}

#[test]
fn orders_join_the_customer_in_their_own_partitions_shard() {
    logs();
    let s = Setup::new("join");
    let dir = tempfile::tempdir().unwrap();
    let known = s.write_customers(40);
    let mut node = join::app().spawn(s.config(dir.path())).unwrap();
    let web = node.wait_ready(WAIT).unwrap().web_addr.unwrap();
    wait_for("every customer in the table", WAIT, || {
        table_holds(web, &known)
    });
    // 50 customer ids, 10 of them unknown.
    let orders = s.write_orders(0, 400, 50);
    wait_for("every order and customer committed", WAIT, || {
        s.committed_total(&s.kafka.topic) == 400 && s.committed_total(&s.customers) == 40
    });
    let metrics = http_get(web, "/metrics").unwrap();
    let active = common::sample(&metrics, "faust_assigned_partitions{role=\"active\"}");
    assert_eq!(
        active,
        Some(f64::from(PARTITIONS)),
        "one task per partition"
    );
    node.stop().unwrap();

    let joined = s.joined(&known);
    assert_eq!(joined.len(), orders.len(), "every order emitted");
    for (id, (customer, order)) in &orders {
        let j = &joined[id];
        assert_eq!(j.len(), 1, "{id} emitted once");
        assert_eq!((&j[0].customer_id, &j[0].order), (customer, order), "{id}");
    }

    // A node with an empty store restores the table from its changelog, task by task.
    let fresh = tempfile::tempdir().unwrap();
    let mut node = join::app().spawn(s.config(fresh.path())).unwrap();
    node.wait_ready(WAIT).unwrap();
    let more = s.write_orders(400, 100, 50);
    wait_for("the new orders committed", WAIT, || {
        s.committed_total(&s.kafka.topic) == 500
    });
    node.stop().unwrap();
    let joined = s.joined(&known);
    for (id, (customer, order)) in &more {
        let j = &joined[id];
        assert_eq!(j.len(), 1, "{id} emitted once");
        assert_eq!((&j[0].customer_id, &j[0].order), (customer, order), "{id}");
    }
}

/// Faust's `app.topic('a', 'b')`: one agent with a table consumes two topics, which form one
/// task group; each key's count adds up its events of both topics, in one shard, and both
/// topics' offsets are committed.
#[test]
fn one_agent_counts_two_topics_into_one_table() {
    logs();
    let kafka = Kafka::new("two-topics");
    let second = unique("two-topics-more");
    kafka.create_topic(&second, PARTITIONS);
    let group = unique("two-topics");
    let dir = tempfile::tempdir().unwrap();
    let mut config = kafka.config(dir.path(), &group);
    let mut topic = config.topics[&kafka.topic].clone();
    topic.partitions = PARTITIONS;
    config.topics.insert(second.clone(), topic);
    let agent = config.agents.get_mut("page_views").unwrap();
    agent.topics = Some(vec![kafka.topic.clone(), second.clone()]);
    let mut truth = kafka.produce_page_views(1_000, 1);
    let mut source = faust::generator::PageViewSource::new(2, 50, 20);
    let views: Vec<_> = (0..700).map(|i| source.next_view(i)).collect();
    let encoded: Vec<(String, Vec<u8>)> = views
        .iter()
        .map(|v| (v.url.clone(), serde_json::to_vec(v).unwrap()))
        .collect();
    kafka.produce_to(
        &second,
        encoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice(), None)),
    );
    for v in views {
        *truth.entry(v.url).or_insert(0) += 1;
    }
    let app = faust::App::new().agent(faust::demo::PageViews::new());
    let mut node = app.spawn(config).unwrap();
    node.wait_ready(WAIT).unwrap();
    let total =
        |topic: &str| -> i64 { committed(&kafka.bootstrap(), &group, topic).values().sum() };
    wait_for("both topics committed", WAIT, || {
        total(&kafka.topic) == 1_000 && total(&second) == 700
    });
    node.stop().unwrap();
    assert_eq!(
        kafka.changelog_table(&group),
        truth,
        "counts over both topics"
    );
}

/// The node process of the kill tests: this test binary run again with this test's name and
/// `--ignored`, its config in [`NODE_CONFIG_VAR`], until it is stopped.
#[test]
#[ignore = "a node process started by the join kill tests"]
fn join_node() {
    let Ok(config) = std::env::var(NODE_CONFIG_VAR) else {
        return;
    };
    let args = ["join-node", "worker", "--config", config.as_str()];
    let code = join::app().main_from(args);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

fn three_nodes_one_killed(test: &str, guarantee: Guarantee) {
    logs();
    let Some(kafka) = Kafka::real(test) else {
        return;
    };
    let s = Setup::on(kafka, test);
    let mut cfg = s.config(Path::new("set-per-node"));
    cfg.store.path = None;
    cfg.processing.guarantee = guarantee;
    cfg.processing.commit_interval = Duration::from_millis(200);
    let known = s.write_customers(200);
    let exe = std::env::current_exe().unwrap();
    let args = ["join_node", "--exact", "--ignored", "--nocapture"];
    let mut nodes = Nodes::with_program(&cfg, exe, &args);
    let all: Vec<usize> = (0..3).map(|_| nodes.start()).collect();
    wait_for("every task held, by all three nodes", WAIT, || {
        let held: Vec<i64> = all.iter().map(|&n| nodes.active(n)).collect();
        held.iter().sum::<i64>() == i64::from(PARTITIONS) && held.iter().all(|&h| h >= 1)
    });
    wait_for("every customer committed", WAIT, || {
        s.committed_total(&s.customers) == 200
    });
    let mut orders = s.write_orders(0, 6_000, 200);
    let victim = all[0];
    wait_for("the victim to join orders", WAIT, || {
        nodes.sum(victim, "faust_events_total{agent=\"orders\"") > 500.0
    });
    nodes.kill(victim);
    orders.extend(s.write_orders(6_000, 4_000, 200));
    wait_for("every order committed", WAIT, || {
        s.committed_total(&s.kafka.topic) == 10_000
    });
    for &n in &all[1..] {
        assert_eq!(nodes.terminate(n, Duration::from_secs(60)).code(), Some(0));
    }

    // Read `read_committed`: the killed node's open transaction holds the outputs after it
    // back until the broker aborts it (`transaction.timeout.ms`, 10 s by default here).
    let mut joined = HashMap::new();
    wait_for("every order's output readable", WAIT, || {
        joined = s.joined(&known);
        joined.len() == orders.len()
    });
    let repeated: usize = joined.values().map(|j| j.len() - 1).sum();
    eprintln!(
        "{test}: {} orders, {} outputs ({repeated} repeated after the SIGKILL)",
        orders.len(),
        joined.values().map(Vec::len).sum::<usize>()
    );
    for (id, (customer, order)) in &orders {
        let j = joined
            .get(id)
            .unwrap_or_else(|| panic!("{id} never emitted"));
        assert_eq!((&j[0].customer_id, &j[0].order), (customer, order), "{id}");
        if guarantee == Guarantee::ExactlyOnce {
            assert_eq!(j.len(), 1, "{id} emitted once under exactly once");
        }
    }
    assert_eq!(joined.len(), orders.len(), "no other order emitted");
}

#[test]
fn a_killed_node_never_breaks_the_join_at_least_once() {
    three_nodes_one_killed("join-kill-alo", Guarantee::AtLeastOnce);
}

#[test]
fn a_killed_node_never_breaks_the_join_exactly_once() {
    three_nodes_one_killed("join-kill-eos", Guarantee::ExactlyOnce);
}
