"""The faust-streaming peer of scripts/bench: workloads A and B as Faust's page-views tutorial
writes them.

A: a Table with default=int incremented per page view, each new count sent to the output
topic as {"url", "count"}. B: the same table .tumbling(10) on event time, each closed window
sent as {"start", "end", "value"} from on_window_close. Outputs carry the input's timestamp so
the latency probe can time them.

Run by the driver as `python faust_app.py worker -l warn` with its settings in BENCH_*
environment variables; two such workers share the four partitions.
"""

import os

import faust

BROKER = os.environ["BENCH_BROKER"]
WORKLOAD = os.environ["BENCH_WORKLOAD"]
GROUP = os.environ["BENCH_GROUP"]
# "kafka" (aiokafka, the default transport) or "confluent" (librdkafka through confluent-kafka,
# Faust at its fastest).
TRANSPORT = os.environ.get("BENCH_TRANSPORT", "kafka")

app = faust.App(
    GROUP,
    broker=f"{TRANSPORT}://{BROKER}",
    store="memory://",
    datadir=os.environ["BENCH_DATADIR"],
    topic_partitions=4,
    topic_replication_factor=1,
    broker_commit_interval=0.1,
    consumer_auto_offset_reset="earliest",
    table_cleanup_interval=1.0,
    web_enabled=False,
)

views = app.topic(os.environ["BENCH_INPUT"], key_serializer="raw", value_serializer="json")
output = app.topic(os.environ["BENCH_OUTPUT"], key_serializer="raw", value_serializer="json")

if WORKLOAD == "a":
    counts = app.Table("counts", default=int, partitions=4)

    @app.agent(views)
    async def count(stream):
        async for event in stream.events():
            url = event.value["url"]
            counts[url] += 1
            await output.send(
                key=url.encode(),
                value={"url": url, "count": counts[url]},
                timestamp=event.message.timestamp,
            )

else:

    async def closed(key, value):
        url, (start, _end) = key
        start_ms = round(start * 1000)
        await output.send(
            key=url.encode(),
            value={"start": start_ms, "end": start_ms + 10_000, "value": value},
        )

    window_counts = (
        app.Table("window_counts", default=int, partitions=4, on_window_close=closed)
        .tumbling(10, expires=10)
        .relative_to_stream()
    )

    @app.agent(views)
    async def count(stream):
        async for event in stream.events():
            window_counts[event.value["url"]] += 1

if __name__ == "__main__":
    app.main()
