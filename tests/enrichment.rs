//! The enrichment example (`examples/enrichment.rs`, included here for its agents): orders
//! joined with a customers global table another agent fills from its own topic. Exact on either
//! broker: every order emitted once, with its customer, or `null` for an unknown one.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/enrichment.rs"]
mod enrichment;

use std::collections::HashMap;
use std::time::Duration;

use common::{http_get, logs, unique, wait_for, Kafka, PARTITIONS};
use enrichment::{Customer, EnrichedOrder, Order};
use faust::config::AgentConfig;

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn orders_are_enriched_with_the_customers_another_agent_keeps() {
    logs();
    let kafka = Kafka::new("enrich");
    let customers_topic = unique("enrich-customers");
    kafka.create_topic(&customers_topic, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("enrich");
    kafka.prepare_changelog(&group, "customers");
    let mut config = kafka.config(dir.path(), &group);
    config.agents.clear();
    let mut topic = config.topics[&kafka.topic].clone();
    topic.partitions = PARTITIONS;
    config.topics.insert(customers_topic.clone(), topic);
    config.agents.insert(
        "customers".into(),
        AgentConfig {
            topics: Some(vec![customers_topic.clone()]),
            ..AgentConfig::default()
        },
    );
    config.agents.insert(
        "orders".into(),
        AgentConfig {
            topics: Some(vec![kafka.topic.clone()]),
            sinks: vec![kafka.out.clone()],
            ..AgentConfig::default()
        },
    );

    let customers: Vec<(String, Customer)> = (0..20)
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
    kafka.produce_to(
        &customers_topic,
        encoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice(), None)),
    );

    let mut node = enrichment::app().spawn(config).unwrap();
    let info = node.wait_ready(WAIT).unwrap();
    let web = info.web_addr.unwrap();
    // Every customer is in this node's copy before any order is written.
    wait_for("every customer in the node's copy", WAIT, || {
        customers.iter().all(|(id, _)| {
            http_get(web, &format!("/tables/customers/{id}"))
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        })
    });
    let orders: Vec<(String, Order)> = (0..300)
        .map(|i| {
            let o = Order {
                customer_id: format!("c-{}", i % 25),
                amount: 100 + i,
            };
            (format!("o-{i}"), o)
        })
        .collect();
    let encoded: Vec<(String, Vec<u8>)> = orders
        .iter()
        .map(|(id, o)| (id.clone(), serde_json::to_vec(o).unwrap()))
        .collect();
    kafka.produce(encoded.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    wait_for("every order committed", WAIT, || {
        kafka.committed(&group).values().sum::<i64>() == orders.len() as i64
    });
    node.stop().unwrap();

    let known: HashMap<String, Customer> = customers.into_iter().collect();
    let mut emitted: HashMap<String, EnrichedOrder> = HashMap::new();
    for r in kafka.records(&kafka.out) {
        let e: EnrichedOrder = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
        assert_eq!(r.key.as_deref(), Some(e.order_id.as_bytes()));
        assert!(
            emitted.insert(e.order_id.clone(), e).is_none(),
            "emitted twice"
        );
    }
    assert_eq!(emitted.len(), orders.len(), "every order emitted once");
    for (id, order) in orders {
        let e = &emitted[&id];
        assert_eq!(e.order, order, "{id}");
        assert_eq!(
            e.customer,
            known.get(&order.customer_id).cloned(),
            "{id}: its customer, or none"
        );
    }
}
