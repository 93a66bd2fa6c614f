"""The driver of scripts/bench: runs every system on the same preloaded page views, one after
the other on the same broker, and reports ratios measured in this one run.

For each workload and system: a fresh consumer group and output topic; the system is timed
by its committed offsets, from its first commit until they reach the end of every partition
(so start-up and group joins do not count for anyone), with its CPU time from /proc over the
same span; its output is then compared with the generator's true counts, and a wrong output
is a failure, not a number. Then, for workload A, each system runs again on a fresh topic fed
at half its measured rate, and end-to-end latency is read from its output.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from procs import stat as process_stat
import recovery
import report
import systems
from systems import A_ONLY, EOS_SYSTEMS, FAUST_BENCH, SLICE, SLICE_SYSTEMS, SYSTEMS

PARTITIONS = 4


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Broker:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.readers = {}

    def create(self, topic, partitions=PARTITIONS):
        futures = self.admin.create_topics([NewTopic(topic, partitions, 1)])
        for f in futures.values():
            f.result(30)

    def end_offsets(self, topic):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-driver"})
        try:
            return sum(c.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in range(PARTITIONS))
        finally:
            c.close()

    def committed(self, group, topic):
        """Sum of the group's committed offsets on `topic` (0 for partitions without one)."""
        c = self.readers.get(group)
        if c is None:
            # A consumer that never subscribes: it reads the group's offsets without joining.
            # read_uncommitted: the offsets committed so far, without waiting for an open
            # transaction that holds newer ones.
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                          "isolation.level": "read_uncommitted"})
            self.readers[group] = c
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5)
        except Exception:
            return 0
        return sum(max(tp.offset, 0) for tp in tps if tp.error is None)


# A system that has committed nothing this long after its start is reported as failed at once,
# not after the run's whole timeout (which grows with the records).
STARTUP_BOUND = 180


def throughput(broker, system, procs, group, topic, total, timeout):
    """Times `procs` by `group`'s committed offsets on `topic` until they reach `total`."""
    started = time.monotonic()
    deadline = started + timeout
    first = None
    while True:
        committed = broker.committed(group, topic)
        now, cpu = time.monotonic(), procs.cpu()
        if committed > 0 and first is None:
            first = (now, cpu, committed)
        if committed >= total:
            t0, cpu0, c0 = first
            events, seconds = total - c0, now - t0
            if seconds <= 0 or events <= 0:
                raise RuntimeError("finished before a second commit: too little data to time")
            return {"events": events, "seconds": seconds, "cpu": cpu - cpu0}
        if procs.exited() and system != "ceiling":
            raise RuntimeError(f"exited with {procs.exited()} at {committed} of {total} records")
        if now > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s at {committed} of {total} records")
        if committed == 0 and now > started + STARTUP_BOUND:
            raise RuntimeError(f"committed nothing in {STARTUP_BOUND} s")
        time.sleep(0.05)


def broker_cpu(pidfile):
    try:
        with open(pidfile) as f:
            st = process_stat(int(f.read().strip()))
    except (OSError, ValueError):
        return 0.0
    return st[1] if st else 0.0


def run_one(args, broker, system, workload, source, kstreams_cp, eos=False):
    """One system on one workload, reading `source` (input topic, truth file, records):
    throughput, CPU, peak RSS and the correctness check (exactly once: also no repeated
    output)."""
    topic, truth, total = source
    tag = f"{system}-{workload}" + ("-eos" if eos else "")
    group, output = f"bench-{tag}", f"bench-{tag}-out"
    broker.create(output)
    if system == "faust-streaming-confluent":
        # Its librdkafka driver creates no topic (`create_topic` is a stub) and this broker
        # creates none on demand: Faust's own topics are made here, as a user of it must.
        for topic, n in systems.faust_topics(group):
            broker.create(topic, n)
    guarantee = "exactly-once" if eos else "at-least-once"
    row = {"system": system, "workload": workload.upper(), "guarantee": guarantee,
           "records": total, "slice": topic != args.topic}
    procs = systems.start(
        system, broker=broker.bootstrap, workload=workload, input_topic=topic,
        output=output, group=group, work=args.work, kstreams_cp=kstreams_cp, eos=eos,
    )
    b0 = broker_cpu(args.broker_pid)
    try:
        timeout = max(180, total / 1500)
        row.update(throughput(broker, system, procs, group, topic, total, timeout))
        row["broker_cpu"] = broker_cpu(args.broker_pid) - b0
        row["rss_mib"] = procs.peak_rss_mib()
        if system != "ceiling":
            verify = [FAUST_BENCH, "verify", "--broker", broker.bootstrap, "--topic", output,
                      "--workload", workload, "--truth", truth, "--wait", "20"]
            verify += ["--no-duplicates"] if eos else []
            out = subprocess.run(verify, capture_output=True, text=True)
            if out.returncode != 0:
                # Its throughput is still printed, marked wrong (never used in a ratio).
                row["status"] = "wrong output: " + (out.stderr or out.stdout).strip()[-400:]
                return row
            log(f"{tag}: {out.stdout.strip()}")
            found = re.search(r"\((\d+) output records\)", out.stdout)
            row["outputs"] = int(found.group(1)) if found else None
        row["status"] = "ok"
    except Exception as e:  # a failed system is reported, and the run goes on
        row["status"] = f"failed: {e}"
    finally:
        procs.stop()
    log(f"{tag}: {report.describe(row)}")
    return row


def run_latency(args, broker, system, rate, kstreams_cp):
    """Workload A fed at `rate` records/s on a fresh topic: end-to-end p50/p99/p99.9."""
    tag = f"lat-{system}"
    topic, output, group = f"{tag}-in", f"{tag}-out", f"bench-{tag}"
    broker.create(topic)
    broker.create(output)
    procs = systems.start(
        system, broker=broker.bootstrap, workload="a", input_topic=topic, output=output,
        group=group, work=args.work, kstreams_cp=kstreams_cp,
    )
    try:
        cmd = [FAUST_BENCH, "latency", "--broker", broker.bootstrap, "--input", topic,
               "--output", output, "--rate", str(int(rate)), "--seconds", str(args.latency_seconds)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.latency_seconds + 120)
        if out.returncode != 0:
            raise RuntimeError((out.stderr or out.stdout).strip()[-300:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        log(f"{tag}: at {int(rate)}/s: {result}")
        return result
    except Exception as e:
        log(f"{tag}: latency failed: {e}")
        return {"error": str(e)}
    finally:
        procs.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--broker-pid", required=True, help="the broker's pid file")
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--work", required=True, help="scratch directory")
    p.add_argument("--kstreams", required=True, help="the Kafka Streams peer's build directory")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--workloads", default="a,b")
    p.add_argument("--guarantees", default="alo,eos",
                   help="alo (at least once) and/or eos (exactly once, for " + ", ".join(EOS_SYSTEMS) + ")")
    p.add_argument("--latency-seconds", type=int, default=20)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--no-recovery", action="store_true")
    p.add_argument("--slice", type=int, default=SLICE,
                   help="records for " + ", ".join(SLICE_SYSTEMS) + " when --records is larger")
    p.add_argument("--mode", default="full")
    p.add_argument("--out", required=True, help="the report (markdown); the chart goes beside it")
    args = p.parse_args()
    args.topic = "page_views"
    args.truth = os.path.join(args.work, "truth.json")
    broker = Broker(args.bootstrap)
    kstreams_cp = f"{args.kstreams}/target/classes:{args.kstreams}/target/lib/*"

    log(f"preloading {args.records} page views")
    subprocess.run([FAUST_BENCH, "preload", "--broker", args.bootstrap, "--topic", args.topic,
                    "--records", str(args.records), "--truth", args.truth], check=True)
    total = broker.end_offsets(args.topic)
    chosen = [s for s in SYSTEMS if s in args.systems.split(",")]
    sources = {s: (args.topic, args.truth, total) for s in chosen}
    if args.records > args.slice and any(s in SLICE_SYSTEMS for s in chosen):
        # The slowest peers read a smaller topic of their own, marked as such in the report.
        topic, truth = f"{args.topic}_slice", os.path.join(args.work, "truth-slice.json")
        log(f"preloading a slice of {args.slice} page views for " + ", ".join(SLICE_SYSTEMS))
        subprocess.run([FAUST_BENCH, "preload", "--broker", args.bootstrap, "--topic", topic,
                        "--records", str(args.slice), "--truth", truth], check=True)
        sliced = (topic, truth, broker.end_offsets(topic))
        sources.update({s: sliced for s in chosen if s in SLICE_SYSTEMS})
    rows = []
    for workload in args.workloads.split(","):
        for system in chosen:
            if workload == "b" and (system == "ceiling" or system in A_ONLY):
                continue
            wanted = args.guarantees.split(",")
            if "alo" in wanted:
                log(f"running {system} on workload {workload.upper()} ({sources[system][2]} records)")
                rows.append(run_one(args, broker, system, workload, sources[system], kstreams_cp))
            if "eos" in wanted and system in EOS_SYSTEMS:
                log(f"running {system} exactly once on workload {workload.upper()}")
                rows.append(run_one(args, broker, system, workload, sources[system], kstreams_cp,
                                    eos=True))
    if not args.no_latency:
        for row in rows:
            if (row["workload"] == "A" and row["system"] not in ["ceiling", *A_ONLY]
                    and row["status"] == "ok"
                    and row["guarantee"] == "at-least-once"):
                rate = 0.5 * row["events"] / row["seconds"]
                row["latency"] = run_latency(args, broker, row["system"], rate, kstreams_cp)
    recovered = []
    if not args.no_recovery:
        for system in recovery.SYSTEMS:
            if report.find(rows, system):
                log(f"recovery of {system}: its store wiped, restarted")
                recovered.append(recovery.run(args, broker, system, kstreams_cp, PARTITIONS))
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump({"rows": rows, "recovery": recovered}, f, indent=1)
    report.write(rows, args, total, recovered)


if __name__ == "__main__":
    sys.exit(main())
