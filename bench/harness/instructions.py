"""bench/instructions: instructions the proxy executes per query, counted
by valgrind's callgrind. Unlike time, instruction counts hardly move
between runs on a noisy machine, so they show what a change to the hot
path saves. Counts userspace only: the kernel's share (most of a proxy's
CPU, docs/benchmarks.md) is not in them."""

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


def options():
    parser = argparse.ArgumentParser(prog="bench/instructions", description=__doc__)
    parser.add_argument("--case", default="point_select ps t1", help="sysbench case by exact name")
    parser.add_argument("--seconds", type=int, default=10, help="length of the counted run (default 10)")
    parser.add_argument("--binary", default="target/release/rwsplit", help="the rwsplit binary")
    parser.add_argument("--keep", metavar="DIR",
                        help="copy each target's counted profile to DIR/<target>.callgrind, "
                             "to read with callgrind_annotate")
    return parser.parse_args()


def dump(pid: int, workdir: str) -> tuple[int, str]:
    """Has callgrind write out (and zero) its counters; the instructions
    counted since the last dump, and the file they were written to."""
    before = set(glob.glob(os.path.join(workdir, f"callgrind.{pid}.*")))
    done = subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"callgrind_control --dump {pid} failed: {done.stdout}{done.stderr}")
    deadline = time.time() + 30
    while time.time() < deadline:
        new = set(glob.glob(os.path.join(workdir, f"callgrind.{pid}.*"))) - before
        for path in new:
            with open(path) as f:
                for line in f:
                    if line.startswith("summary:"):
                        return int(line.split()[1]), path
        time.sleep(0.2)
    raise RuntimeError(f"callgrind of pid {pid} wrote no dump")


def count(case, target, seconds: int, workdir: str) -> dict:
    """Instructions per query of `target` under `case`, net of what the
    process executes idle over as long (the monitor, timers)."""
    sysbench.run(case, target.port, 2)  # warm-up: connections, pools, caches
    dump(target.pid, workdir)
    time.sleep(seconds)
    idle, _ = dump(target.pid, workdir)
    result, _ = sysbench.run(case, target.port, seconds)
    busy, profile = dump(target.pid, workdir)
    return {
        "queries": result.queries,
        "per_query": (busy - idle) / result.queries,
        "idle_per_second": idle / seconds,
        "profile": profile,
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
        out = f"--callgrind-out-file={workdir}/callgrind.%p"
        wrapper = os.path.join(workdir, "rwsplit-under-callgrind")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec {" ".join(VALGRIND)} {out} {binary} "$@"\n')
        os.chmod(wrapper, 0o755)
        bench.say("starting HAProxy and rwsplit under callgrind")
        targets["haproxy"] = Haproxy(sandbox.replicas, workdir, prefix=(*VALGRIND, out))
        targets["rwsplit"] = Rwsplit(wrapper, sandbox)
        print(f"{case.name}, {args.seconds} s under callgrind (userspace instructions, "
              "net of each process's idle background):\n")
        print("| target | queries | instructions per query | idle instructions per second |")
        print("|---|---:|---:|---:|")
        for name, target in targets.items():
            bench.say(f"{case.name}, {name}")
            counted = count(case, target, args.seconds, workdir)
            print(f"| {name} | {counted['queries']:,} | {counted['per_query']:,.0f} "
                  f"| {counted['idle_per_second']:,.0f} |", flush=True)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(counted["profile"], os.path.join(args.keep, f"{name}.callgrind"))


if __name__ == "__main__":
    main()
