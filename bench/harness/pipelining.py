"""bench/pipelining: what a replica and the whole machine spend on a point
select when queries reach the replica one at a time, and when several
arrive together on one connection (pipelined: sent in one write, answered
in order). Step 20 of docs/benchmarks.md: the part of a query's cost that
a proxy relaying each client's statements on that client's own backend
connection, as both rwsplit and HAProxy do, cannot remove.

The client is PyMySQL on one connection, whatever the batch, so the
client's own cost per query is the same in every run; what changes is
how many queries the replica finds waiting each time it wakes."""

import argparse
import glob
import random
import statistics
import struct
import time

import pymysql
from pymysql.connections import MySQLResult

import main as bench
import sysbench
from processes import Sandbox, cpu_seconds, machine_busy_seconds


def options():
    parser = argparse.ArgumentParser(prog="bench/pipelining", description=__doc__)
    parser.add_argument("--batches", default="1,4,8,32",
                        help="queries sent together, comma-separated (default 1,4,8,32)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every batch size (default 3)")
    parser.add_argument("--binary", default="target/release/rwsplit",
                        help="the rwsplit binary (for its sandbox)")
    return parser.parse_args()


def packet(payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + b"\0" + payload


def server_pid(sandbox: Sandbox, name: str) -> int:
    (path,) = glob.glob(f"{sandbox.dir}/{name}/**/*.pid", recursive=True)
    with open(path) as f:
        return int(f.read())


def measured(label, pid: int, work) -> dict:
    """Runs `work()`, which returns the queries it had answered and in how
    many seconds; per query, the replica's CPU time and the machine's."""
    server_before, busy_before = cpu_seconds(pid), machine_busy_seconds()
    queries, elapsed = work()
    server, busy = cpu_seconds(pid) - server_before, machine_busy_seconds() - busy_before
    return {
        "batch": label,
        "qps": queries / elapsed,
        "server_us_per_query": server * 1e6 / queries,
        "machine_us_per_query": busy * 1e6 / queries,
    }


def batches_of(port: int, batch: int, seconds: int):
    """Point selects in batches of `batch` for `seconds`, on one connection."""
    conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app",
                           database="sbtest", autocommit=True)
    queries = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        ids = [random.randint(1, sysbench.TABLE_SIZE) for _ in range(batch)]
        conn._sock.sendall(b"".join(
            packet(b"\x03SELECT c FROM sbtest1 WHERE id=%d" % i) for i in ids))
        for _ in range(batch):
            conn._next_seq_id = 1  # each response is numbered from 1
            result = MySQLResult(conn)
            result.read()
            if len(result.rows) != 1:
                raise RuntimeError(f"a point select returned {len(result.rows)} rows")
        queries += batch
    elapsed = time.monotonic() - started
    conn.close()
    return queries, elapsed


def sysbench_case(port: int, case: str, seconds: int):
    """The benchmark's own case, straight to the replica, for comparison:
    `case`'s clients each wait for an answer before the next query."""
    (chosen,) = [c for c in sysbench.CASES if c.name == case]
    result, _ = sysbench.run(chosen, port, seconds)
    return result.queries, seconds


def main():
    args = options()
    batches = [int(b) for b in args.batches.split(",")]
    cases = ["point_select text t8", "point_select text t32"]
    sandbox = Sandbox(args.binary)
    try:
        bench.load_data(sandbox)
        replica = sandbox.replicas[0]
        pid = server_pid(sandbox, replica.name)
        runs = []
        for round_ in range(1, args.rounds + 1):
            for batch in batches:
                bench.say(f"batch {batch}, round {round_}/{args.rounds}")
                runs.append(measured(batch, pid,
                                     lambda: batches_of(replica.port, batch, args.seconds)))
            for case in cases:
                bench.say(f"{case}, round {round_}/{args.rounds}")
                runs.append(measured(f"sysbench {case}", pid,
                                     lambda: sysbench_case(replica.port, case, args.seconds)))
    finally:
        sandbox.close()
    print(f"\nPoint selects straight to {replica.name} (batches: one connection; "
          f"sysbench: one per client), medians of {args.rounds} rounds of {args.seconds} s:\n")
    print("| queries sent together | qps | replica CPU µs/query | machine CPU µs/query |")
    print("|---:|---:|---:|---:|")
    for batch in [*batches, *(f"sysbench {case}" for case in cases)]:
        mine = [r for r in runs if r["batch"] == batch]
        median = {k: statistics.median(r[k] for r in mine) for k in mine[0] if k != "batch"}
        print(f"| {batch} | {median['qps']:,.0f} | {median['server_us_per_query']:.1f} "
              f"| {median['machine_us_per_query']:.1f} |")


if __name__ == "__main__":
    main()
