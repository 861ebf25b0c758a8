"""bench/threads: how rwsplit's session threads (`listen.threads`, and with
--pinned `listen.pin_threads`) compare with HAProxy under sysbench, and where
the time goes: the proxy's CPU per query, the whole machine's, and the
proxy's context switches and moves between CPUs per query, and with
--syscalls its system calls per query (perf's tracepoints), and with
--processes what sysbench and the servers spend per query beside it."""

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

import main as bench
import sysbench
from processes import (Haproxy, Rwsplit, context_switches, cpu_seconds, machine_busy_seconds, migrations,
                       sandbox_with_targets, tcp_segments_sent)


def options():
    parser = argparse.ArgumentParser(prog="bench/threads", description=__doc__)
    parser.add_argument("--threads", default="1,2", help="listen.threads values to run, comma-separated (default 1,2)")
    parser.add_argument("--cases", default="point_select ps t8,point_select ps t32",
                        help="sysbench cases by exact name, comma-separated")
    parser.add_argument("--seconds", type=int, default=10, help="length of each run (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every target per case (default 5)")
    parser.add_argument("--binary", default="target/pgo/rwsplit",
                        help="the rwsplit binary (default: as it ships, built by scripts/release)")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=BINARY:THREADS",
                        help="also run another rwsplit binary (e.g. an older commit's build) with "
                             "THREADS session threads, shown as LABEL; repeatable")
    parser.add_argument("--pinned", action="store_true",
                        help="also HAProxy with its threads bound to CPUs (cpu-map) and rwsplit with "
                             "listen.pin_threads, for each --threads value")
    parser.add_argument("--syscalls", action="store_true",
                        help="also count the proxy's system calls per query, all of them and epoll_wait "
                             "alone, with perf stat on the kernel's syscall tracepoints")
    parser.add_argument("--wakeups", action="store_true",
                        help="also trace the kernel's wake-ups of the proxy's threads (perf record on "
                             "sched:sched_wakeup, machine-wide: the event is the waker's): wake-ups per "
                             "query, and how many put the thread on the CPU of the task that woke it — "
                             "the wake-affine placement behind most moves between CPUs (step 21). "
                             "Tracing slows every task, so the other columns are not comparable with "
                             "an untraced run")
    parser.add_argument("--processes", action="store_true",
                        help="also the CPU per query of sysbench (its user and system time) and of the "
                             "MariaDB servers (all of them), and what is left of the machine's (the "
                             "kernel's work charged to no process, and everything else running), and the TCP "
                             "segments the machine sent per query")
    return parser.parse_args()


def parse_variant(text: str) -> tuple:
    """`LABEL=BINARY:THREADS` as (label, binary, threads)."""
    found = re.fullmatch(r"([^=]+)=(.+):(\d+)", text)
    if not found or not os.access(found[2], os.X_OK):
        sys.exit(f"--variant {text}: expected LABEL=BINARY:THREADS with an executable BINARY")
    return found[1], found[2], int(found[3])


SYSCALL_EVENTS = {"syscalls": "raw_syscalls:sys_enter", "epoll_waits": "syscalls:sys_enter_epoll_wait"}


def count_syscalls(pid: int) -> subprocess.Popen:
    """perf stat counting `pid`'s system calls until it is sent SIGINT."""
    return subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(SYSCALL_EVENTS.values()), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def syscalls_counted(perf: subprocess.Popen) -> dict:
    """What `count_syscalls` counted, by SYSCALL_EVENTS key."""
    perf.send_signal(signal.SIGINT)
    _, err = perf.communicate()
    counts = {fields[2]: fields[0] for fields in (line.split(",") for line in err.splitlines()) if len(fields) > 2}
    found = {key: counts.get(event, "") for key, event in SYSCALL_EVENTS.items()}
    if not all(value.isdigit() for value in found.values()):
        sys.exit(f"perf stat could not count system calls (needs root and tracefs):\n{err}")
    return {key: int(value) for key, value in found.items()}


WAKEUP = re.compile(r"\[(\d+)\].*\bpid=(\d+)\b.*\btarget_cpu=(\d+)")


def trace_wakeups(path: str) -> subprocess.Popen:
    """perf record of every wake-up on the machine into `path`, until it is
    sent SIGINT."""
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-e", "sched:sched_wakeup", "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1)  # perf's start-up, before the counted run
    return perf


def wakeups_traced(perf: subprocess.Popen, path: str, pid: int) -> dict:
    """Of the wake-ups `trace_wakeups` recorded, those of `pid`'s threads,
    and those that placed the thread on the waker's CPU."""
    perf.send_signal(signal.SIGINT)
    _, err = perf.communicate()
    script = subprocess.run(["perf", "script", "-i", path, "-F", "cpu,trace"], capture_output=True, text=True)
    os.remove(path)
    # SIGINT is how perf record is told to stop: it exits with 130, or by
    # the signal itself.
    if perf.returncode not in (0, 130, -signal.SIGINT) or script.returncode != 0:
        sys.exit(f"perf could not trace wake-ups (needs root and tracefs; perf record ended with "
                 f"{perf.returncode}, perf script with {script.returncode}):\n{err}{script.stderr}")
    threads = {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}
    woken = affine = 0
    for found in WAKEUP.finditer(script.stdout):
        if int(found[2]) in threads:
            woken += 1
            affine += int(found[1]) == int(found[3])
    if woken == 0:
        sys.exit(f"perf traced no wake-up of PID {pid}'s threads, which served queries meanwhile:\n{err}")
    return {"wakeups": woken, "affine_wakeups": affine}


def children_cpu_seconds() -> float:
    """User plus system CPU time of this process's children that have ended."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def measure(case, port: int, pid: int, seconds: int, syscalls: bool, wakeups: bool, servers: list) -> dict:
    """One sysbench run of `case` through the proxy `pid` listening on
    `port`; with `servers` (PIDs), also their CPU and sysbench's."""
    busy, cpu, switches, moved = machine_busy_seconds(), cpu_seconds(pid), context_switches(pid), migrations(pid)
    servers_cpu, segments = sum(cpu_seconds(server) for server in servers), tcp_segments_sent()
    perf = count_syscalls(pid) if syscalls else None
    trace = f"/tmp/rwsplit-wakeups-{os.getpid()}.data" if wakeups else None
    tracer = trace_wakeups(trace) if trace else None
    # Only sysbench ends between the two readings: perf is waited for after.
    clients_cpu = children_cpu_seconds()
    result, _ = sysbench.run(case, port, seconds)
    clients_cpu = children_cpu_seconds() - clients_cpu
    servers_cpu = sum(cpu_seconds(server) for server in servers) - servers_cpu
    queries = result.queries
    counted = syscalls_counted(perf) if perf else {}
    if servers:
        counted.update(sysbench=clients_cpu * 1e6, servers=servers_cpu * 1e6,
                       segments=tcp_segments_sent() - segments)
    if tracer:
        counted.update(wakeups_traced(tracer, trace, pid))
    voluntary, involuntary = (after - before for after, before in zip(context_switches(pid), switches))
    measured = {
        **{key: count / queries for key, count in counted.items()},
        "qps": result.qps,
        "p50_ms": result.p50_ms,
        "proxy_us": (cpu_seconds(pid) - cpu) * 1e6 / queries,
        "machine_us": (machine_busy_seconds() - busy) * 1e6 / queries,
        "voluntary": voluntary / queries,
        "involuntary": involuntary / queries,
        "migrations": (migrations(pid) - moved) / queries,
    }
    if servers:
        measured["rest"] = (measured["machine_us"] - measured["proxy_us"] - measured["sysbench"]
                            - measured["servers"])
    return measured


def main():
    args = options()
    names = args.cases.split(",")
    cases = [c for c in sysbench.CASES if c.name in names]
    if len(cases) != len(names):
        sys.exit(f"unknown case in {names}; known: {[c.name for c in sysbench.CASES]}")
    variants = [parse_variant(v) for v in args.variant]
    with sandbox_with_targets(args.binary) as (sandbox, targets):
        bench.load_data(sandbox)
        targets["haproxy"] = Haproxy(sandbox.replicas, sandbox.dir)
        if args.pinned:
            targets["haproxy cpu-map"] = Haproxy(sandbox.replicas, sandbox.dir, cpu_map=True)
        for threads in args.threads.split(","):
            targets[f"rwsplit threads={threads}"] = Rwsplit(args.binary, sandbox, threads=int(threads))
            if args.pinned:
                targets[f"rwsplit threads={threads} pinned"] = Rwsplit(
                    args.binary, sandbox, threads=int(threads), pin=True)
        for label, binary, threads in variants:
            targets[label] = Rwsplit(binary, sandbox, threads=threads)
        # The optional columns: what `measure` calls them, their heading, format.
        servers = list(sandbox.server_pids().values()) if args.processes else []
        extra = [*([("syscalls", "system calls", ".2f"), ("epoll_waits", "epoll_wait", ".3f")]
                   if args.syscalls else []),
                 *([("sysbench", "sysbench CPU µs", ".1f"), ("servers", "servers CPU µs", ".1f"),
                    ("rest", "rest of the machine's CPU µs", ".1f"), ("segments", "TCP segments", ".2f")]
                   if args.processes else []),
                 *([("wakeups", "wake-ups", ".3f"), ("affine_wakeups", "on the waker's CPU", ".3f")]
                   if args.wakeups else [])]
        print("| case | target | qps | p50 ms | proxy CPU µs/query | machine CPU µs/query "
              "| voluntary switches/query | involuntary switches/query | migrations/query |"
              + "".join(f" {heading}/query |" for _, heading, _ in extra))
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra))
        for case in cases:
            runs = {name: [] for name in targets}
            for round_ in range(args.rounds):
                for name, target in bench.in_turn(targets, round_):
                    bench.say(f"{case.name}, {name}, round {round_ + 1}/{args.rounds}")
                    runs[name].append(measure(case, target.port, target.pid, args.seconds, args.syscalls,
                                              args.wakeups, servers))
                    run = runs[name][-1]
                    bench.say(f"  {run['qps']:,.0f} queries/s, proxy {run['proxy_us']:.1f} µs/query, "
                              f"machine {run['machine_us']:.1f} µs/query")
            for name, mine in runs.items():
                median = {key: statistics.median(r[key] for r in mine) for key in mine[0]}
                print(f"| {case.name} | {name} | {median['qps']:,.0f} | {median['p50_ms']:.3f} "
                      f"| {median['proxy_us']:.1f} | {median['machine_us']:.1f} "
                      f"| {median['voluntary']:.2f} | {median['involuntary']:.2f} "
                      f"| {median['migrations']:.3f} |"
                      + "".join(f" {median[key]:{form}} |" for key, _, form in extra),
                      flush=True)


if __name__ == "__main__":
    main()
