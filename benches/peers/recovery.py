"""The recovery measure: a node's store wiped, how long until it is ready again.

After a system's workload A run (at least once), its state directory is deleted and the system
is started again in the same consumer group, with nothing new to read: it must rebuild its table
from the changelog topic its run wrote. Timed from the process's start until it is ready:

- faust-rs: every partition's restore finished (`faust_recovery_seconds_count` on `/metrics`
  equals the partitions) and `/readyz` answers 200; records from `faust_recovery_records_total`;
- Kafka Streams: the state listener printed RUNNING and every restore that started has ended
  (the restore listener's lines, `bench: restore-end <records>`);
- the bare consumer (`faust-bench ceiling`) on the same changelog topic, in a fresh group: until
  its committed offsets reach the end of every partition.

Before the restart the driver waits until the system's group has no members (Kafka Streams does
not leave its group on close; its successor would wait out the session timeout otherwise).

Every figure includes the process's start and its group join, the same for all three, so
`records / seconds` is the restore rate an operator sees, next to the bare consumer's on the same
records.
"""

import os
import re
import shutil
import time
import urllib.error
import urllib.request

import systems
from systems import FAUST_BENCH
from procs import Group

# The port a restarted faust-rs node serves /metrics on (the bench's broker is 19292).
WEB_PORT = 19393
# Changelog topic of each system's table in workload A (group = application id).
CHANGELOG = {"faust-rs": "{group}-page_counts-changelog", "kafka-streams": "{group}-counts-changelog"}
SYSTEMS = list(CHANGELOG)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def _metric(text, name):
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def _faust_rs_ready(procs, partitions):
    base = f"http://127.0.0.1:{WEB_PORT}"
    _, text = _get(base + "/metrics")
    restored = _metric(text, "faust_recovery_seconds_count")
    if restored is None or restored < partitions:
        return None
    status, _ = _get(base + "/readyz")
    return int(_metric(text, "faust_recovery_records_total")) if status == 200 else None


def _kafka_streams_ready(log_path):
    try:
        with open(log_path, errors="replace") as f:
            lines = [l for l in f if l.startswith("bench: ")]
    except OSError:
        return None
    starts = sum(l.startswith("bench: restore-start") for l in lines)
    ends = [l for l in lines if l.startswith("bench: restore-end")]
    running = any(l.strip() == "bench: state RUNNING" for l in lines)
    if not running or starts != len(ends):
        return None
    return sum(int(l.split()[2]) for l in ends)


def _empty(broker, group):
    """True once `group` has no members, else None."""
    try:
        found = broker.admin.describe_consumer_groups([group])[group].result(10)
    except Exception:
        return None
    return True if not found.members else None


def _wait(what, procs, ready, timeout):
    started = time.monotonic()
    while True:
        got = ready()
        if got is not None:
            return got, time.monotonic() - started
        if procs and procs.exited():
            raise RuntimeError(f"{what} exited with {procs.exited()} before it was ready")
        if time.monotonic() > started + timeout:
            raise RuntimeError(f"{what} not ready after {timeout} s")
        time.sleep(0.02)


def run(args, broker, system, kstreams_cp, partitions):
    """`system`'s store wiped after its workload A run: seconds until ready, records restored,
    and the bare consumer over the same changelog."""
    group = f"bench-{system}-a"
    changelog = CHANGELOG[system].format(group=group)
    row = {"system": system, "changelog": changelog, "records": broker.end_offsets(changelog)}
    state = os.path.join(args.work, "state", group)
    shutil.rmtree(state, ignore_errors=True)
    timeout = max(120, row["records"] / 5000)
    # The old node gone from the group first: Kafka Streams does not send LeaveGroup on close,
    # so its successor would otherwise wait out the session timeout, which is not restoring.
    row["left_after"] = _wait("the group's old member", None, lambda: _empty(broker, group), 120)[1]
    t0 = time.monotonic()
    procs = systems.start(
        system, broker=broker.bootstrap, workload="a", input_topic=args.topic,
        output=f"bench-{system}-a-out", group=group, work=args.work, kstreams_cp=kstreams_cp,
        web=f"127.0.0.1:{WEB_PORT}",
    )
    try:
        if system == "faust-rs":
            ready = lambda: _faust_rs_ready(procs, partitions)
        else:
            log_path = os.path.join(args.work, "logs", f"{group}-0.log")
            ready = lambda: _kafka_streams_ready(log_path)
        row["restored"], row["seconds"] = _wait(system, procs, ready, timeout)
        row["rss_mib"] = procs.peak_rss_mib()
        row["cpu"] = procs.cpu()
    except Exception as e:
        row["status"] = f"failed: {e}"
        return row
    finally:
        procs.stop()
    log(f"recovery {system}: {row['restored']} records restored, ready after "
        f"{time.monotonic() - t0:.1f} s")
    try:
        row["ceiling_seconds"] = ceiling(args, broker, changelog, row["records"], timeout)
    except Exception as e:
        row["status"] = f"bare consumer failed: {e}"
        return row
    row["status"] = "ok"
    return row


def ceiling(args, broker, topic, records, timeout):
    """Seconds for the bare consumer, from its start, to commit the end of every partition of
    `topic`."""
    group = f"bench-recovery-ceiling-{topic}"
    cmd = [FAUST_BENCH, "ceiling", "--broker", broker.bootstrap, "--topic", topic, "--group", group]
    procs = Group(group, [cmd], log_dir=os.path.join(args.work, "logs"))
    try:
        done = lambda: True if broker.committed(group, topic) >= records else None
        return _wait("the bare consumer", procs, done, timeout)[1]
    finally:
        procs.stop()


def table(rows):
    """The recovery rows as markdown."""
    lines = ["| system | changelog records | restored | seconds until ready | restore records/s "
             "| bare consumer s, same topic | restore rate ÷ bare consumer's | peak RSS MiB |",
             "|" + "---|" * 8]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['system']} | {r.get('records', '')} | | | | | | {r.get('status')} |")
            continue
        rate, bare = r["restored"] / r["seconds"], r["records"] / r["ceiling_seconds"]
        lines.append(f"| {r['system']} | {r['records']:,} | {r['restored']:,} | {r['seconds']:.1f} "
                     f"| {rate:,.0f} | {r['ceiling_seconds']:.1f} | {rate / bare:.2f} "
                     f"| {r['rss_mib']:.0f} |")
    return "\n".join(lines)
