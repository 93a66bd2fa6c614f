"""How each system under test is started: its command line(s), environment and files.

Every system reads the same input topic, commits every 100 ms, at-least-once (or exactly once,
for the systems in EOS_SYSTEMS), and writes to its own output topic; its consumer group is
`group`.
"""

import os
import sys

from procs import Group

PEERS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(PEERS))
FAUST_BENCH = os.path.join(ROOT, "target", "release", "faust-bench")
# Which systems the benchmark knows, in report order; the ceiling is the bare consumer.
SYSTEMS = ["faust-rs", "faust-rs-changes", "faust-streaming", "faust-streaming-confluent",
           "quixstreams", "kafka-streams", "kafka-streams-nocache", "ceiling"]
# Workload A only: faust-rs-changes is faust-rs with the table's coalesced change stream as its
# output (`[tables.page_counts] sinks`, no per-event emit), like Kafka Streams' default record
# cache; kafka-streams-nocache is Kafka Streams with that cache off (one output per input), like
# faust-rs's per-event emit. Compare faust-rs with kafka-streams-nocache, faust-rs-changes with
# kafka-streams.
# faust-streaming-confluent is faust-streaming on its librdkafka transport (`confluent://`),
# workload A only (faust-streaming fails B on either transport, see analysis.md).
A_ONLY = ["faust-rs-changes", "kafka-streams-nocache", "faust-streaming-confluent"]
# The systems that also run exactly once: faust-rs (`processing.guarantee = "exactly_once"`)
# and Kafka Streams (`exactly_once_v2`). Faust's own exactly-once mode is known in its tracker
# for duplicates and fenced producers, and quixstreams' is left for later.
# faust-streaming runs at about 2,500 events/s here (20 minutes for 3,000,000 records): when the
# run is larger, these read a slice of SLICE records of their own, marked in the report.
SLICE_SYSTEMS = ["faust-streaming", "faust-streaming-confluent"]
SLICE = 200_000
EOS_SYSTEMS = ["faust-rs", "faust-rs-changes", "kafka-streams", "kafka-streams-nocache"]


def faust_rs_config(path, broker, group, workload, input_topic, output, store, eos=False,
                    changes=False, web="127.0.0.1:0"):
    """A faust-rs node's config file for this run (`changes`: the table's change stream is the
    output, not a per-event emit)."""
    sinks = f'\n[agents.page_views]\nsinks = ["{output}"]\n' if workload == "a" else ""
    if changes:
        sinks = f'\n[tables.page_counts]\nsinks = ["{output}"]\n'
    with open(path, "w") as f:
        f.write(
            f"""# Written by scripts/bench for one run.
[app]
id = "{group}"

[broker]
bootstrap = "{broker}"
session_timeout = "6s"

[store]
path = "{store}"

[web]
bind = "{web}"

[processing]
commit_interval = "100ms"
guarantee = "{'exactly_once' if eos else 'at_least_once'}"

[topics.{input_topic}]
partitions = 4
key_codec = "string"
value_codec = "json"

[topics.{output}]
partitions = 4
key_codec = "string"
value_codec = "json"
{sinks}
[log]
level = "warn"
"""
        )


def faust_topics(group):
    """The topics faust_app.py's app needs besides its input and output, with their partitions:
    the table's changelog and the assignor's leader topic."""
    return [(f"{group}-counts-changelog", 4), (f"{group}-__assignor-__leader", 1)]


def start(system, *, broker, workload, input_topic, output, group, work, kstreams_cp, eos=False,
          web="127.0.0.1:0"):
    """Starts `system` on workload `workload` ("a" or "b"), exactly once when `eos`; returns its
    process group. `web`: where a faust-rs node serves `/metrics`."""
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    state = os.path.join(work, "state", group)
    os.makedirs(state, exist_ok=True)
    if system in ("faust-rs", "faust-rs-changes"):
        cfg = os.path.join(state, "faust-rs.toml")
        faust_rs_config(cfg, broker, group, workload, input_topic, output, state, eos,
                        changes=system == "faust-rs-changes", web=web)
        cmd = [FAUST_BENCH, "node", workload, "--input", input_topic, "--output", output]
        return Group(group, [cmd + ["--", "worker", "--config", cfg]], log_dir=logs)
    env = {
        "BENCH_BROKER": broker,
        "BENCH_WORKLOAD": workload,
        "BENCH_INPUT": input_topic,
        "BENCH_OUTPUT": output,
        "BENCH_GROUP": group,
    }
    if system in ("faust-streaming", "faust-streaming-confluent"):
        # Two workers share the four partitions, each with its own data directory.
        app = os.path.join(PEERS, "faust_app.py")
        cmd = [sys.executable, app, "worker", "-l", "warn", "--without-web"]
        transport = "confluent" if system == "faust-streaming-confluent" else "kafka"
        env = {**env, "BENCH_TRANSPORT": transport}
        envs = [{**env, "BENCH_DATADIR": os.path.join(state, f"w{i}")} for i in range(2)]
        return Group(group, [cmd, cmd], env=envs, log_dir=logs)
    if system == "quixstreams":
        app = os.path.join(PEERS, "quix_app.py")
        return Group(group, [[sys.executable, app]], env=[{**env, "BENCH_DATADIR": state}], log_dir=logs)
    if system in ("kafka-streams", "kafka-streams-nocache"):
        cmd = ["java", "-Xms256m", "-Xmx1g", "-cp", kstreams_cp, "bench.Bench"]
        cmd += [broker, workload, "eos" if eos else "alo", input_topic, output, group, state]
        if system == "kafka-streams-nocache":
            cmd.append("nocache")
        return Group(group, [cmd], log_dir=logs)
    if system == "ceiling":
        cmd = [FAUST_BENCH, "ceiling", "--broker", broker, "--topic", input_topic, "--group", group]
        return Group(group, [cmd], log_dir=logs)
    raise ValueError(f"unknown system {system}")
