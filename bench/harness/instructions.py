"""bench/instructions: instructions the proxy executes per query, counted
by valgrind's callgrind. Unlike time, instruction counts hardly move
between runs on a noisy machine, so they show what a change to the hot
path saves. With --cache-sim, also the misses of callgrind's simulated
caches: how much code and data a query touches; with --cold, of caches
small enough that a query finds little of the one before in them, as at
one client, where sysbench and a server run between two of the proxy's
statements on the same CPU. Counts userspace only:
the kernel's share (most of a proxy's CPU, docs/benchmarks.md) is not in
them."""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

import main as bench
import sysbench
from processes import Haproxy, Rwsplit, sandbox_with_targets

VALGRIND = ("valgrind", "--tool=callgrind")
CACHE_SIM = ("--cache-sim=yes",)
# 1 KiB first-level caches and a 16 KiB last level (2-way, 4-way; 64-byte
# lines), a thirty-second of a real core's first level and far less than
# its last: what a query leaves in them is mostly gone by the next, so
# their misses come near to the cache lines a query touches.
COLD = ("--I1=1024,2,64", "--D1=1024,2,64", "--LL=16384,4,64")


def options():
    parser = argparse.ArgumentParser(prog="bench/instructions", description=__doc__)
    parser.add_argument("--case", default="point_select ps t1", help="sysbench case by exact name")
    parser.add_argument("--seconds", type=int, default=10, help="length of the counted run (default 10)")
    parser.add_argument("--binary", default="target/pgo/rwsplit",
                        help="the rwsplit binary (default: as it ships, built by scripts/release)")
    parser.add_argument("--cache-sim", action="store_true",
                        help="also simulate the caches (callgrind --cache-sim=yes) and count "
                             "first-level instruction and data misses and last-level misses "
                             "per query: the footprint of a query, deterministic like the "
                             "instruction counts (the kernel's own use of the caches is not "
                             "simulated)")
    parser.add_argument("--cold", action="store_true",
                        help="--cache-sim with tiny simulated caches (1 KiB first level, "
                             "16 KiB last level), so that the misses approach the cache "
                             "lines a query touches: what it pays when other processes "
                             "emptied the caches since its last statement")
    parser.add_argument("--keep", metavar="DIR",
                        help="copy each target's counted profile to DIR/<target>.callgrind, "
                             "and its profile of as long idle to DIR/<target>.idle.callgrind, "
                             "to read with callgrind_annotate")
    return parser.parse_args()


def dump(pid: int, workdir: str) -> tuple[dict[str, int], str]:
    """Has callgrind write out (and zero) its counters; the events counted
    since the last dump (instructions `Ir`, and the cache simulation's
    misses when on), and the file they were written to."""
    before = set(glob.glob(os.path.join(workdir, f"callgrind.{pid}.*")))
    done = subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control --dump {pid} failed: {done.stdout}{done.stderr}")
    deadline = time.time() + 30
    while time.time() < deadline:
        new = set(glob.glob(os.path.join(workdir, f"callgrind.{pid}.*"))) - before
        for path in new:
            with open(path) as f:
                names = []
                for line in f:
                    if line.startswith("events:"):
                        names = line.split()[1:]
                    elif line.startswith("summary:"):
                        # Trailing zero counts may be left out.
                        counts = [int(v) for v in line.split()[1:]]
                        counts += [0] * (len(names) - len(counts))
                        return dict(zip(names, counts)), path
        time.sleep(0.2)
    raise RuntimeError(f"callgrind of pid {pid} wrote no dump")


# What is reported per query, from callgrind's events: instructions, and
# with --cache-sim the simulated first-level instruction and data misses and
# last-level misses.
COLUMNS = {
    "instructions": ("Ir",),
    "L1 instruction misses": ("I1mr",),
    "L1 data misses": ("D1mr", "D1mw"),
    "last-level misses": ("ILmr", "DLmr", "DLmw"),
}


def count(case, target, seconds: int, workdir: str, columns: list[str]) -> dict:
    """The `columns` (keys of COLUMNS) per query of `target` under `case`,
    net of what the process executes idle over as long (the monitor,
    timers)."""
    sysbench.run(case, target.port, 2)  # warm-up: connections, pools, caches
    dump(target.pid, workdir)
    time.sleep(seconds)
    idle, idle_profile = dump(target.pid, workdir)
    result, _ = sysbench.run(case, target.port, seconds)
    busy, profile = dump(target.pid, workdir)
    per_query = {
        column: sum(busy[e] - idle[e] for e in COLUMNS[column]) / result.queries
        for column in columns
    }
    return {
        "queries": result.queries,
        "per_query": per_query,
        "idle_per_second": idle["Ir"] / seconds,
        "profile": profile,
        "idle_profile": idle_profile,
    }


def main():
    args = options()
    matching = [c for c in sysbench.CASES if c.name == args.case]
    if not matching:
        sys.exit(f"unknown case {args.case!r}; known: {[c.name for c in sysbench.CASES]}")
    case = matching[0]
    binary = os.path.abspath(args.binary)
    with sandbox_with_targets(binary) as (sandbox, targets):
        bench.load_data(sandbox)
        workdir = sandbox.dir
        simulated = args.cache_sim or args.cold
        valgrind = VALGRIND + (CACHE_SIM if simulated else ()) + (COLD if args.cold else ())
        out = f"--callgrind-out-file={workdir}/callgrind.%p"
        wrapper = os.path.join(workdir, "rwsplit-under-callgrind")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec {" ".join(valgrind)} {out} {binary} "$@"\n')
        os.chmod(wrapper, 0o755)
        bench.say("starting HAProxy and rwsplit under callgrind")
        targets["haproxy"] = Haproxy(sandbox.replicas, workdir, prefix=(*valgrind, out))
        # Under callgrind, a debug build (CI's smoke run) takes 15-25 s on
        # this machine to generate its RSA key and log in to the backends.
        targets["rwsplit"] = Rwsplit(wrapper, sandbox, ready_timeout=180)
        columns = [c for c in COLUMNS if simulated or c == "instructions"]
        print(f"{case.name}, {args.seconds} s under callgrind (userspace, per query, "
              "net of each process's idle background):\n")
        print("| target | queries | " + " | ".join(f"{c} per query" for c in columns)
              + " | idle instructions per second |")
        print("|---|---:|" + "---:|" * len(columns) + "---:|")
        for name, target in targets.items():
            bench.say(f"{case.name}, {name}")
            counted = count(case, target, args.seconds, workdir, columns)
            figures = " | ".join(f"{counted['per_query'][c]:,.0f}" for c in columns)
            print(f"| {name} | {counted['queries']:,} | {figures} "
                  f"| {counted['idle_per_second']:,.0f} |", flush=True)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(counted["profile"], os.path.join(args.keep, f"{name}.callgrind"))
                shutil.copy(counted["idle_profile"],
                            os.path.join(args.keep, f"{name}.idle.callgrind"))


if __name__ == "__main__":
    main()
