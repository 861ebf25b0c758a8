"""What read-your-writes costs (docs/benchmarks.md, "Read-your-writes"):
sysbench's oltp_read_write outside transactions (every statement
autocommit, so reads go to replicas) through rwsplit with
`routing.read_your_writes` off, session and global, and directly against
the primary as a reference, for a read-heavy mix (sysbench's default, 14
reads to 4 writes) and a write-heavy one (2 reads to 12 writes). Reports
queries a second, the 95th percentile of a transaction's latency, and the
share of SELECTs the primary ran (the servers' own Com_select counters:
reads sent there, and the positions read-your-writes asks it for)."""

import argparse
import os
import statistics
import sys

import pymysql

sys.path.insert(0, os.path.dirname(__file__))
import main as harness  # noqa: E402
import sysbench  # noqa: E402
from processes import Rwsplit, sandbox_with_targets  # noqa: E402

# Outside transactions two clients may delete and insert the same row at
# once: the duplicate key (1062) is sysbench's race, not the proxy's, and is
# retried like the deadlocks it ignores by default.
IGNORED = "--mysql-ignore-errors=1062,1213,1205,1020"
MIXES = {
    "read-heavy": ("--skip_trx=on", IGNORED),
    "write-heavy": (
        "--skip_trx=on",
        IGNORED,
        "--point_selects=2",
        "--simple_ranges=0",
        "--sum_ranges=0",
        "--order_ranges=0",
        "--distinct_ranges=0",
        "--index_updates=4",
        "--non_index_updates=4",
        "--delete_inserts=2",
    ),
}
MODES = ["off", "session", "global"]


def selects(sandbox) -> list:
    """Com_select of each server, in sandbox order."""
    counts = []
    for server in sandbox.servers:
        conn = pymysql.connect(host="127.0.0.1", port=server.port, user="app", password="app")
        with conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
            counts.append(int(cursor.fetchone()[1]))
        conn.close()
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--binary", required=True, help="the rwsplit binary")
    parser.add_argument("--seconds", type=int, default=20, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mix and mode, interleaved")
    parser.add_argument("--threads", type=int, default=8, help="sysbench clients")
    args = parser.parse_args()
    with sandbox_with_targets(args.binary) as (sandbox, targets):
        harness.load_data(sandbox)
        for mode in MODES:
            targets[mode] = Rwsplit(args.binary, sandbox, routing=f"read_your_writes: {mode}")
        rows = []
        for round_ in range(args.rounds):
            for mix, extra in MIXES.items():
                case = sysbench.Case(f"{mix} t{args.threads}", "oltp_read_write", args.threads, extra, writes=True)
                ports = {"direct": sandbox.primary.port, **{m: targets[m].port for m in MODES}}
                for target, port in ports.items():
                    before = selects(sandbox)
                    result, _ = sysbench.run(case, port, args.seconds)
                    after = selects(sandbox)
                    moved = [a - b for a, b in zip(after, before)]
                    total = max(sum(moved), 1)
                    rows.append((round_ + 1, mix, target, result.qps, result.p95_ms, 100 * moved[0] / total))
                    print(
                        f"round {round_ + 1} {mix:11} {target:8} {result.qps:9.0f} q/s  "
                        f"p95 {result.p95_ms:7.2f} ms  SELECTs on the primary {100 * moved[0] / total:5.1f} %",
                        flush=True,
                    )
        print("\nmedian over rounds, and throughput against `off` in the same run:")
        for mix in MIXES:
            off = statistics.median(r[3] for r in rows if r[1] == mix and r[2] == "off")
            for target in ["direct", *MODES]:
                mine = [r for r in rows if r[1] == mix and r[2] == target]
                mid = lambda i: statistics.median(r[i] for r in mine)  # noqa: E731
                print(
                    f"  {mix:11} {target:8} {mid(3):9.0f} q/s ({mid(3) / off:4.2f}x)  p95 {mid(4):7.2f} ms  "
                    f"SELECTs on the primary {mid(5):5.1f} %"
                )


if __name__ == "__main__":
    main()
