"""The quixstreams peer of scripts/bench: workloads A and B as a quixstreams user writes them.

A: a stateful count per key (RocksDB state with a changelog topic), each new count to the
output topic as {"url", "count"}. B: tumbling_window(10 s, grace 0).count().final(closing_strategy="partition"), which
emits {"start", "end", "value"} when a window closes. quixstreams stamps outputs with the
input's timestamp.

Run by the driver as `python quix_app.py` with its settings in BENCH_* environment variables.
"""

import os
from datetime import timedelta

from quixstreams import Application

app = Application(
    broker_address=os.environ["BENCH_BROKER"],
    consumer_group=os.environ["BENCH_GROUP"],
    auto_offset_reset="earliest",
    commit_interval=0.1,
    state_dir=os.environ["BENCH_DATADIR"],
    use_changelog_topics=True,
    loglevel="WARNING",
)
views = app.topic(os.environ["BENCH_INPUT"], key_deserializer="str", value_deserializer="json")
output = app.topic(os.environ["BENCH_OUTPUT"], key_serializer="str", value_serializer="json")
sdf = app.dataframe(views)

if os.environ["BENCH_WORKLOAD"] == "a":

    def count(view, state):
        n = state.get("count", 0) + 1
        state.set("count", n)
        return {"url": view["url"], "count": n}

    sdf = sdf.apply(count, stateful=True)
else:
    sdf = sdf.tumbling_window(timedelta(seconds=10), grace_ms=0).count().final(closing_strategy="partition")

sdf.to_topic(output)

if __name__ == "__main__":
    app.run()
