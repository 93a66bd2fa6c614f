//! Page views scored by a slow service, eight at a time per partition: Faust's
//! `@app.agent(topic, concurrency=8)`, as the short form of a `ConcurrentAgent`.
//!
//! `prepare` is the call to the service (here a 20 ms wait that scores the URL by its length),
//! with the event's key and value but no tables; up to eight events of a partition wait at once, the views of
//! one URL (the record key) one after another. `handle` adds each score to the URL's total in
//! `url_scores`, one event at a time in offset order, so the totals are as exact as with a
//! plain agent. One at a time, a partition scores 50 views a second; eight at a time, up to
//! 400, as long as the views are spread over URLs: the views of one URL still wait in turn,
//! so the generator's most viewed URL (a fifth of the views) is scored at most 50 times a
//! second. `[agents.lookups] concurrency = N` in the config changes the eight.
//!
//! Run it on the embedded broker, with the built-in page-view generator:
//!
//! ```text
//! cargo run --release --example lookups -- worker --config config/lookups.toml
//! curl 127.0.0.1:6066/tables/url_scores/%2Fpage%2F1
//! ```

use std::process::ExitCode;
use std::time::Duration;

use faust::demo::PageView;
use faust::{agent, AgentError, App, Codec, Event, Table};

/// The slow service: a URL's score, after 20 ms.
async fn score(url: &str) -> Result<u64, AgentError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(url.len() as u64)
}

fn main() -> ExitCode {
    let scores = Table::<String, u64>::new("url_scores").key_codec(Codec::String);
    let lookups = agent("lookups")
        .topic("page_views")
        .tables(scores)
        .concurrency(8)
        .prepare(async |_url: Option<&String>, view: &PageView| score(&view.url).await)
        .handle(
            async |event: &mut Event<'_, String, PageView>, score, scores| {
                let url = event.value().url.clone();
                event
                    .table(scores)?
                    .update(url, |t| t.unwrap_or(0) + score)?;
                Ok(())
            },
        );
    App::new().concurrent_agent(lookups).main()
}
