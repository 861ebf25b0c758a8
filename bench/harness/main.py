"""bench/run: sysbench through rwsplit vs a direct connection vs HAProxy,
memory per idle client, classification cost. See bench/run for usage."""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import pymysql

import idle
import pool
import report
import sysbench
from processes import Haproxy, Rwsplit, Sandbox, cpu_seconds, machine_ticks, migrations

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARK_START = "<!-- results:start -->"
MARK_END = "<!-- results:end -->"
# Rounds on a quiet machine see under 3 % of its CPU time stolen; with 15 %
# or more, a proxy's CPU per query doubles whichever proxy it is (docs/
# benchmarks.md, step 16).
MAX_STEAL_PCT = 5.0
ATTEMPTS = 3
# Six rounds of 10 s rather than three of 20: the same time per case and
# target, twice the samples of the machine's state, which is what moves a
# round's ratio by ±10 % (docs/benchmarks.md, step 26); and a multiple of
# the three targets, so each runs twice in every place of the rotation.
ROUNDS = 6
SECONDS = 10


def options():
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="2 s per case, 1 round, small idle test; no docs")
    parser.add_argument("--seconds", type=int, help=f"length of each sysbench run (default {SECONDS}, smoke 2)")
    parser.add_argument("--rounds", type=int, help=f"rounds of direct/HAProxy/rwsplit per case (default {ROUNDS}, smoke 1)")
    parser.add_argument("--cases", help="only the cases whose name contains this text (or one of several, "
                                        "comma-separated), without the idle and classification tests and "
                                        "leaving the docs alone: a sample of those cases for --pool")
    parser.add_argument("--binary", help="the rwsplit binary (default target/pgo/rwsplit, built first by scripts/release)")
    parser.add_argument("--out", help="directory for the JSON (default bench/results, smoke a temp dir)")
    parser.add_argument("--report", metavar="JSON", help="only rewrite docs/benchmarks.md and the chart from a saved run")
    parser.add_argument("--pool", metavar="JSON", nargs="+",
                        help="only print the targets over the rounds of these saved runs together: for each, "
                             "the median over all rounds, an interval for it, and the rounds and runs that met "
                             "it (runs of one build, or of builds with the same hot path; docs/benchmarks.md, "
                             "step 29)")
    parser.add_argument("--max-steal", type=float, default=MAX_STEAL_PCT, metavar="PCT",
                        help="measure a round again when more than PCT %% of the machine's CPU time was "
                             f"stolen by the hypervisor during it (default {MAX_STEAL_PCT:g}, at most "
                             f"{ATTEMPTS} attempts; the discarded rounds are kept in the JSON)")
    args = parser.parse_args()
    if not chosen_cases(args.cases):
        parser.error(f"no case matches --cases {args.cases!r}; the cases are: "
                     + ", ".join(c.name for c in sysbench.CASES))
    args.seconds = args.seconds or (2 if args.smoke else SECONDS)
    args.rounds = args.rounds or (1 if args.smoke else ROUNDS)
    args.binary = os.path.abspath(args.binary or os.path.join(ROOT, "target/pgo/rwsplit"))
    args.out = args.out or (tempfile.mkdtemp(prefix="rwsplit-bench-out-") if args.smoke else os.path.join(ROOT, "bench/results"))
    return args


def chosen_cases(texts) -> list:
    """The cases `--cases` names: those containing any of its
    comma-separated texts; every case without it."""
    wanted = texts.split(",") if texts else [""]
    return [c for c in sysbench.CASES if any(text in c.name for text in wanted)]


def say(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def in_turn(targets: dict, round_: int) -> list:
    """The targets' (name, value) pairs in the order they run in round
    `round_` (from 0): each round starts one further along, so that over as
    many rounds as targets each runs once in every place. Whatever the
    target run just before leaves behind would otherwise lean on the
    ratios between targets the same way every round (docs/benchmarks.md,
    step 23)."""
    items = list(targets.items())
    start = round_ % len(items)
    return items[start:] + items[:start]


def load_data(sandbox: Sandbox):
    """The sysbench table on the primary, replicated to every replica."""
    say(f"sysbench prepare: 1 table of {sysbench.TABLE_SIZE} rows")
    create_database(sandbox)
    sysbench.prepare(sandbox.primary.port)
    wait_replicated(sandbox)


def create_database(sandbox: Sandbox):
    conn = pymysql.connect(host="127.0.0.1", port=sandbox.primary.port, user="app", password="app")
    with conn.cursor() as cursor:
        cursor.execute("CREATE DATABASE sbtest")
    conn.close()


def wait_replicated(sandbox: Sandbox):
    primary = pymysql.connect(host="127.0.0.1", port=sandbox.primary.port, user="app", password="app")
    with primary.cursor() as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos")
        (position,) = cursor.fetchone()
    for replica in sandbox.replicas:
        conn = pymysql.connect(host="127.0.0.1", port=replica.port, user="app", password="app")
        with conn.cursor() as cursor:
            cursor.execute("SELECT MASTER_GTID_WAIT(%s, 120)", (position,))
            if cursor.fetchone()[0] != 0:
                raise RuntimeError(f"{replica.name} did not catch up")


def measure(case, target: str, port: int, pid, seconds: int) -> tuple:
    """One sysbench run against one target: its result, with the proxy's
    CPU time and moves and the machine's stolen time over it; and the
    sysbench command."""
    cpu_before = cpu_seconds(pid) if pid else None
    moved_before = migrations(pid) if pid else None
    ticks_before, stolen_before = machine_ticks()
    result, command = sysbench.run(case, port, seconds)
    cpu = cpu_seconds(pid) - cpu_before if pid else None
    moved = migrations(pid) - moved_before if pid else None
    ticks, stolen = machine_ticks()
    measured = pid is not None and result.queries > 0
    return {
        "case": case.name,
        "target": target,
        **result.__dict__,
        "proxy_cpu_s": cpu,
        "cpu_us_per_query": cpu * 1e6 / result.queries if measured else None,
        "migrations_per_query": moved / result.queries if measured else None,
        # Time the hypervisor ran other guests on this machine's CPUs.
        "steal_pct": 100 * (stolen - stolen_before) / max(ticks - ticks_before, 1),
    }, command


def run_cases(args, sandbox) -> tuple:
    """Every case against every target, in turn; the runs kept, the runs
    measured again for stolen time, and the commands."""
    rwsplit = Rwsplit(args.binary, sandbox)
    over_replicas = Haproxy(sandbox.replicas, sandbox.dir)
    over_primary = Haproxy([sandbox.primary], sandbox.dir)
    runs, discarded, commands = [], [], {}
    try:
        cases = chosen_cases(args.cases)
        for case in cases:
            direct = sandbox.primary.port if case.writes else sandbox.replicas[0].port
            haproxy = over_primary if case.writes else over_replicas
            targets = {"direct": (direct, None), "haproxy": (haproxy.port, haproxy.pid), "rwsplit": (rwsplit.port, rwsplit.pid)}
            for round_ in range(args.rounds):
                for target, (port, pid) in in_turn(targets, round_):
                    say(f"{case.name}, {target}, round {round_ + 1}/{args.rounds}")
                    for attempt in range(1, ATTEMPTS + 1):
                        run, command = measure(case, target, port, pid, args.seconds)
                        run.update(round=round_ + 1, attempt=attempt)
                        if run["steal_pct"] <= args.max_steal or attempt == ATTEMPTS:
                            break
                        say(f"{run['steal_pct']:.1f} % of the machine's CPU time was stolen: measured again")
                        discarded.append(run)
                    commands[case.name] = command.replace(f"--mysql-port={port}", "--mysql-port=PORT")
                    runs.append(run)
    finally:
        rwsplit.close()
        over_replicas.close()
        over_primary.close()
    return runs, discarded, commands


def idle_memory(args, sandbox) -> dict:
    steps = [0, 100, 200] if args.smoke else [0, 1000, 10000]
    rwsplit = Rwsplit(args.binary, sandbox)
    try:
        say(f"memory with {', '.join(map(str, steps))} idle clients")
        return idle.measure(rwsplit.port, rwsplit.pid, steps)
    finally:
        rwsplit.close()


def build_classification() -> str:
    """Builds the classification micro-benchmark (bench/classify.rs); the
    path of its executable."""
    done = subprocess.run(
        ["cargo", "bench", "--quiet", "--no-run", "--bench", "classify", "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    for line in done.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "classify" \
                and message.get("executable"):
            return message["executable"]
    raise RuntimeError("cargo bench --no-run --bench classify reported no executable")


def classification(executable: str) -> list:
    say("classification micro-benchmark (bench/classify.rs)")
    done = subprocess.run([executable, "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def frozen(path: str, directory: str) -> str:
    """A copy of the executable at `path` in `directory`: what a run
    measures stays what it started with, whatever is built meanwhile."""
    copy = os.path.join(directory, os.path.basename(path))
    shutil.copy2(path, copy)
    return copy


def machine(binary: str) -> dict:
    def first_line(command):
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            return "unknown"

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"]).returncode != 0
    commit += " with uncommitted changes" if dirty else ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": f"Linux {platform.release()}",
        "mariadb": first_line(["mariadbd", "--version"]).split(" Ver ")[-1],
        "haproxy": first_line(["haproxy", "-v"]).split(" - ")[0],
        "sysbench": first_line(["sysbench", "--version"]),
        "rwsplit": f"{commit} ({os.path.relpath(binary, ROOT)})",
    }


def save(result: dict, out: str):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, result["file"]), "w") as f:
        json.dump(result, f, indent=1)


def update_docs(result: dict):
    path = os.path.join(ROOT, "docs/benchmarks.md")
    with open(path) as f:
        text = f.read()
    start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    # Rendered before the file is opened for writing: a failure leaves it whole.
    updated = text[:start] + "\n" + report.markdown(result) + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(updated)
    report.chart(result["summary"], os.path.join(ROOT, "docs/benchmarks.png"))


def main():
    args = options()
    if args.report:
        with open(args.report) as f:
            result = json.load(f)
        update_docs(result)
        print(report.markdown(result))
        return
    if args.pool:
        results = []
        for path in args.pool:
            with open(path) as f:
                results.append(json.load(f))
        print(pool.markdown(results, [os.path.relpath(p, ROOT) for p in args.pool]))
        return
    # The idle test holds 10 000 client sockets here and as many in rwsplit.
    idle.raise_fd_limit(1000 if args.smoke else 12000)
    started = time.time()
    # What is measured is fixed at the start (the commit, the rwsplit binary,
    # the micro-benchmark), so that editing or building during a run does
    # not leak into it.
    measured = machine(args.binary)
    with tempfile.TemporaryDirectory(prefix="rwsplit-bench-build-") as workdir:
        args.binary = frozen(args.binary, workdir)
        # A run of some cases is one more sample of them, for --pool.
        full = not args.smoke and not args.cases
        if full:
            # Built first, so that a build failure does not come after the runs.
            say("building the classification micro-benchmark")
            classify_bench = frozen(build_classification(), workdir)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        say("starting a sandbox: a MariaDB primary and 2 replicas")
        sandbox = Sandbox(args.binary)
        try:
            load_data(sandbox)
            runs, discarded, commands = run_cases(args, sandbox)
            result = {
                "date": stamp[:10],
                "file": f"{stamp}.json",
                "command": " ".join(["bench/run", *sys.argv[1:]]),
                "seconds": args.seconds,
                "rounds": args.rounds,
                "order": "rotated",
                "machine": measured,
                "sysbench_commands": commands,
                "max_steal_pct": args.max_steal,
                "runs": runs,
                "discarded": discarded,
                "summary": report.summarize(runs),
            }
            # Saved now, so that a failure later loses none of the runs.
            save(result, args.out)
            if not args.cases:
                result["idle"] = idle_memory(args, sandbox)
                save(result, args.out)
        finally:
            sandbox.close()
        result["classify"] = classification(classify_bench) if full else None
    save(result, args.out)
    if args.smoke:
        # Exercise the report code too, away from the docs.
        with open(os.path.join(args.out, "benchmarks.md"), "w") as f:
            f.write(report.markdown(result))
        report.chart(result["summary"], os.path.join(args.out, "benchmarks.png"))
    elif full:
        update_docs(result)
    print(report.markdown(result))
    say(f"done in {time.time() - started:.0f} s; results in {args.out}/{result['file']}")
    failed = [name for name, _, met, _ in report.verdicts(result["summary"], result.get("idle")) if not met and "errors" in name]
    if failed:
        say("some runs reconnected: see the table")
        sys.exit(1)


if __name__ == "__main__":
    main()
