//! A stream-table join on co-partitioned topics (Kafka Streams' KStream-KTable join, Faust's
//! "enrich a stream from a table another agent keeps"): orders enriched with the customers
//! table that another agent fills from its own topic.
//!
//! - `customers` consumes `customers` (key: customer id, value: [`Customer`]) and keeps the
//!   latest of each in the table `customers`.
//! - `orders` consumes `orders`, keyed by the same customer id (value: [`Order`]), looks its
//!   key up in the same table with [`Event::join`] and emits a [`JoinedOrder`] to its sinks
//!   (`orders_joined` in `config/join.toml`). An order whose customer is unknown is emitted
//!   with `customer: null`, not dropped.
//!
//! Both agents declare the table, so `customers` and `orders` form one co-partitioned group:
//! partition `p` of both topics is one task, processed by one actor that owns shard `p` of
//! the table, on one node through every rebalance. The topics must have equal partition
//! counts (checked at start-up) and be keyed alike with the same partitioner (murmur2, as
//! Java clients, Kafka Streams and Faust write). Every output carries the partition it was
//! joined on.
//!
//! Unlike the GlobalTable join (`examples/enrichment.rs`), each node holds only its shards:
//! the table scales with the cluster. A read sees every write of its task so far: a customer
//! processed before the order, in the task's order, is seen.
//!
//! ```text
//! cargo run --release --example join -- worker --config config/join.toml
//! curl 127.0.0.1:6067/tables/customers/c-1
//! ```

use std::process::ExitCode;
use std::time::Duration;

use faust::{Agent, AgentError, App, Codec, Event, Table, TableSpec, Timer};
use serde::{Deserialize, Serialize};

/// A customer, as written to `customers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer's name.
    pub name: String,
    /// Their tier: "gold", "silver", ...
    pub tier: String,
}

/// An order, as written to `orders` (keyed by its customer's id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    pub order_id: String,
    /// The amount, in cents.
    pub amount: u64,
}

/// An order with its customer, as emitted (keyed by the customer id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinedOrder {
    /// The customer id (the input's key).
    pub customer_id: String,
    /// The order.
    pub order: Order,
    /// The customer, if known when the order was handled.
    pub customer: Option<Customer>,
    /// The partition the order was joined on: its own, and its table shard's.
    pub partition: i32,
}

/// The customers table: customer id -> latest [`Customer`].
pub fn customers_table() -> Table<String, Customer> {
    Table::new("customers").key_codec(Codec::String)
}

/// Keeps the latest of each customer.
pub struct Customers {
    /// The table it fills.
    pub table: Table<String, Customer>,
}

impl Agent for Customers {
    type Key = String;
    type Value = Customer;

    fn name(&self) -> &str {
        "customers"
    }

    fn topics(&self) -> Vec<String> {
        vec!["customers".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.table.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, Customer>) -> Result<(), AgentError> {
        let id = event
            .key()
            .cloned()
            .ok_or_else(|| AgentError::msg("a customer without an id"))?;
        let customer = event.value().clone();
        event.table(&self.table)?.insert(id, customer)?;
        Ok(())
    }
}

/// Emits each order joined with its customer.
pub struct Orders {
    /// The table it reads (declared, so its topic joins the table's task group).
    pub customers: Table<String, Customer>,
}

impl Agent for Orders {
    type Key = String;
    type Value = Order;

    fn name(&self) -> &str {
        "orders"
    }

    fn topics(&self) -> Vec<String> {
        vec!["orders".into()]
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.customers.spec()]
    }

    async fn handle(&self, event: &mut Event<'_, String, Order>) -> Result<(), AgentError> {
        let customer_id = event
            .key()
            .cloned()
            .ok_or_else(|| AgentError::msg("an order without a customer id"))?;
        let joined = JoinedOrder {
            customer: event.join(&self.customers)?,
            order: event.value().clone(),
            partition: event.partition(),
            customer_id: customer_id.clone(),
        };
        event.emit(Some(&customer_id), &joined).await?;
        Ok(())
    }
}

/// The app: both agents, sharing one table.
pub fn app() -> App {
    let table = customers_table();
    App::new()
        .agent(Customers {
            table: table.clone(),
        })
        .agent(Orders { customers: table })
}

/// Sample input for the demo: customer `c-<n % 10>` and an order of theirs, every half second.
fn feed() -> Timer {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    Timer::every("feed", Duration::from_millis(500), move |ctx| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let id = format!("c-{}", i % 10);
            let tier = if i % 3 == 0 { "gold" } else { "silver" };
            let customer = Customer {
                name: format!("customer {}", i % 10),
                tier: tier.into(),
            };
            ctx.send("customers", Some(&id), &customer).await?;
            let order = Order {
                order_id: format!("o-{i}"),
                amount: 100 + i,
            };
            ctx.send("orders", Some(&id), &order).await
        }
    })
    .on_leader()
}

#[allow(dead_code)] // The tests include this file for its agents.
fn main() -> ExitCode {
    app().timer(feed()).main()
}
