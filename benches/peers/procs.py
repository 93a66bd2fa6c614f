"""Processes under measurement: start, CPU time and peak RSS from /proc, stop.

CPU is user + system time of every process of the system and its descendants (a JVM's or a
Python worker's threads are in its own figure); a process that has exited is reaped with
wait4, whose rusage gives its final CPU time and peak RSS.
"""

import ctypes
import os
import signal
import subprocess
import time

TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def _own_session_dying_with_parent():
    """In the child: a process group of its own (stopped as one), killed if the driver dies."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stat(pid):
    """(ppid, cpu seconds) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state; ppid is fields[1]; utime and stime are fields[11] and [12].
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(roots):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat(int(name))
            if st:
                children.setdefault(st[0], []).append(int(name))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class Group:
    """The process(es) of one system under test."""

    def __init__(self, name, commands, env=None, log_dir=None):
        self.name = name
        self.procs = []
        self.done = {}  # pid -> (cpu seconds, peak RSS KiB) once reaped
        self.peak_kib = {}
        for i, cmd in enumerate(commands):
            log = open(os.path.join(log_dir, f"{name}-{i}.log"), "wb") if log_dir else None
            p = subprocess.Popen(
                cmd,
                env={**os.environ, **(env[i] if env else {})},
                stdout=log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=_own_session_dying_with_parent,
            )
            self.procs.append(p)

    def _reap(self):
        for p in self.procs:
            if p.pid in self.done:
                continue
            try:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                self.done[p.pid] = (usage.ru_utime + usage.ru_stime, usage.ru_maxrss)

    def cpu(self):
        """CPU seconds used so far by every process of the system."""
        self._reap()
        live = [p.pid for p in self.procs if p.pid not in self.done]
        total = sum(cpu for cpu, _ in self.done.values())
        for pid in _descendants(live):
            st = stat(pid)
            if st:
                total += st[1]
            self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), _hwm_kib(pid))
        return total

    def peak_rss_mib(self):
        """Peak resident memory, summed over the system's processes."""
        self.cpu()
        live = sum(v for pid, v in self.peak_kib.items() if pid not in self.done)
        return (live + sum(rss for _, rss in self.done.values())) / 1024

    def exited(self):
        """The exit codes of processes that have ended."""
        self._reap()
        return [p.returncode for p in self.procs if p.pid in self.done]

    def _signal_running(self, sig):
        """Sends `sig` to the process group of every process still running."""
        for p in self.procs:
            if p.pid not in self.done:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self, wait=20):
        """SIGTERM to every process group, SIGKILL after `wait` seconds."""
        self.cpu()
        self._signal_running(signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(self.exited()) < len(self.procs):
            time.sleep(0.1)
        self._signal_running(signal.SIGKILL)
        while len(self.exited()) < len(self.procs):
            time.sleep(0.05)
