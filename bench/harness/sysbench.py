"""Running sysbench and reading its report."""

import re
import subprocess
from dataclasses import dataclass

TABLE_SIZE = 10_000


@dataclass
class Case:
    """One sysbench workload."""

    name: str
    script: str
    threads: int
    args: tuple = ()
    # Writes: the direct and HAProxy targets point at the primary.
    writes: bool = False


CASES = [
    Case("point_select ps t1", "oltp_point_select", 1),
    Case("point_select ps t8", "oltp_point_select", 8),
    Case("point_select ps t32", "oltp_point_select", 32),
    Case("point_select text t1", "oltp_point_select", 1, ("--db-ps-mode=disable",)),
    Case("point_select text t8", "oltp_point_select", 8, ("--db-ps-mode=disable",)),
    Case("point_select text t32", "oltp_point_select", 32, ("--db-ps-mode=disable",)),
    Case("read_only t8", "oltp_read_only", 8, ("--skip_trx=on",)),
    Case("read_write t8", "oltp_read_write", 8, (), writes=True),
]


def common_args(port: int) -> list:
    return [
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={port}",
        "--mysql-user=app",
        "--mysql-password=app",
        "--mysql-db=sbtest",
        "--tables=1",
        f"--table-size={TABLE_SIZE}",
    ]


def prepare(port: int):
    """Creates sbtest.sbtest1 with TABLE_SIZE rows on the server at `port`
    (the database must exist)."""
    done = subprocess.run(
        ["sysbench", "oltp_read_write", *common_args(port), "prepare"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sysbench prepare failed:\n{done.stdout}\n{done.stderr}")


@dataclass
class Result:
    transactions: int
    queries: int
    tps: float
    qps: float
    # Transactions sysbench retried after a deadlock or lock wait timeout.
    retried: int
    reconnects: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def run(case: Case, port: int, seconds: int) -> tuple:
    """Runs `case` against `port` for `seconds`; the result and the report."""
    command = [
        "sysbench",
        case.script,
        *common_args(port),
        f"--threads={case.threads}",
        f"--time={seconds}",
        "--histogram=on",
        # sysbench's default: deadlocks and lock waits (1213, 1020, 1205),
        # which oltp_read_write meets by design, are retried and counted as
        # "ignored errors"; any other error ends the run, and the harness.
        *case.args,
        "run",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout), " ".join(command)


def parse(report: str) -> Result:
    def number(label: str) -> str:
        found = re.search(rf"^\s*{label}:\s+([\d.]+)", report, re.MULTILINE)
        if not found:
            raise RuntimeError(f"no '{label}' in the sysbench report:\n{report}")
        return found[1]

    def rate(label: str) -> float:
        found = re.search(rf"^\s*{label}:\s+\d+\s+\(([\d.]+) per sec\.\)", report, re.MULTILINE)
        if not found:
            raise RuntimeError(f"no '{label}' rate in the sysbench report:\n{report}")
        return float(found[1])

    histogram = [
        (float(value), int(count))
        for value, count in re.findall(r"^\s*([\d.]+)\s+\|[*\s]*?\s(\d+)\s*$", report, re.MULTILINE)
    ]
    return Result(
        transactions=int(number("transactions")),
        queries=int(number("queries")),
        tps=rate("transactions"),
        qps=rate("queries"),
        retried=int(number("ignored errors")),
        reconnects=int(number("reconnects")),
        p50_ms=percentile(histogram, 0.50),
        p95_ms=percentile(histogram, 0.95),
        p99_ms=percentile(histogram, 0.99),
    )


# sysbench 1.0's latency histogram: 1024 buckets spaced evenly on a log
# scale from 0.001 ms to 100 s, so each bucket is this factor wider than
# the one before (1.018: 2 µs at 0.11 ms) and a percentile read from it is
# that coarse.
BUCKET_GROWTH = (1e5 / 1e-3) ** (1 / 1024)


def bucket_width(value_ms: float) -> float:
    """How far apart two adjacent histogram values near `value_ms` are, in
    ms: the resolution of a percentile there."""
    return value_ms * (BUCKET_GROWTH - 1)


def percentile(histogram: list, fraction: float) -> float:
    """The latency below which `fraction` of the events fell, from
    sysbench's histogram of (upper bound in ms, count)."""
    total = sum(count for _, count in histogram)
    if total == 0:
        return float("nan")
    seen = 0
    for value, count in histogram:
        seen += count
        if seen >= fraction * total:
            return value
    return histogram[-1][0]
