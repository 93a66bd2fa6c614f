//! Orders enriched from a customers table that another agent fills from its own topic: the
//! most common Faust app after counting, and Kafka Streams' stream-to-GlobalKTable join.
//!
//! - `customers` consumes `customers` (key: customer id, value: [`Customer`]) and keeps the
//!   latest of each in the global table `customers`, which every node holds in full.
//! - `orders` consumes `orders` (key: order id, value: [`Order`]), looks the customer up in
//!   that table (it reads it without declaring it: only `customers` writes it) and emits an
//!   [`EnrichedOrder`] to its sinks (`orders_enriched` in `config/enrichment.toml`). An order
//!   whose customer is unknown is emitted with `customer: null`, not dropped.
//!
//! The two topics need not be co-partitioned: every node has every customer. Reads see the
//! customers committed so far (the copy follows the table's changelog), so an order and its
//! customer written at the same moment may meet before the customer arrives.
//!
//! Run it on the embedded broker; a timer on the leader writes a customer and an order every
//! half second, and the enriched orders are counted in `/metrics` and readable in
//! `/tables/customers`:
//!
//! ```text
//! cargo run --release --example enrichment -- worker --config config/enrichment.toml
//! curl 127.0.0.1:6066/tables/customers/c-1
//! ```

use std::process::ExitCode;
use std::time::Duration;

use faust::{Agent, AgentError, App, Codec, Event, GlobalTable, TableSpec, Timer};
use serde::{Deserialize, Serialize};

/// A customer, as written to `customers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer's name.
    pub name: String,
    /// Their tier: "gold", "silver", ...
    pub tier: String,
}

/// An order, as written to `orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Who ordered.
    pub customer_id: String,
    /// The amount, in cents.
    pub amount: u64,
}

/// An order with its customer, as emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    /// The order id (the input's key).
    pub order_id: String,
    /// The order.
    pub order: Order,
    /// The customer, if known when the order was handled.
    pub customer: Option<Customer>,
}

/// The customers table: customer id -> latest [`Customer`].
pub fn customers_table() -> GlobalTable<String, Customer> {
    GlobalTable::new("customers").key_codec(Codec::String)
}

/// Keeps the latest of each customer.
pub struct Customers {
    /// The table it fills.
    pub table: GlobalTable<String, Customer>,
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
        event.global(&self.table)?.insert(id, customer)?;
        Ok(())
    }
}

/// Emits each order with its customer.
pub struct Orders {
    /// The table it reads.
    pub customers: GlobalTable<String, Customer>,
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

    async fn handle(&self, event: &mut Event<'_, String, Order>) -> Result<(), AgentError> {
        let order_id = event
            .key()
            .cloned()
            .ok_or_else(|| AgentError::msg("an order without an id"))?;
        let order = event.value().clone();
        let customer = event.global(&self.customers)?.get(&order.customer_id)?;
        let enriched = EnrichedOrder {
            order_id: order_id.clone(),
            order,
            customer,
        };
        event.emit(Some(&order_id), &enriched).await?;
        Ok(())
    }
}

/// The app: both agents.
pub fn app() -> App {
    let table = customers_table();
    App::new()
        .agent(Customers {
            table: table.clone(),
        })
        .agent(Orders { customers: table })
}

/// Sample input for the demo: customer `c-<n % 10>` and an order from them, every half second.
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
                customer_id: id,
                amount: 100 + i,
            };
            ctx.send("orders", Some(&format!("o-{i}")), &order).await
        }
    })
    .on_leader()
}

#[allow(dead_code)] // The tests include this file for its agents.
fn main() -> ExitCode {
    app().timer(feed()).main()
}
