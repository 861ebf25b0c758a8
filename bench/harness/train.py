"""scripts/release, step 2: rwsplit built with -Cprofile-generate serves
every sysbench case over a sandbox, so that the profile it writes on exit
says which code the hot path runs. The profile shapes only how the compiler
lays out and inlines code, never what the code does."""

import argparse
import sys

import main as bench
import sysbench
from processes import Rwsplit, sandbox_with_targets


def options():
    parser = argparse.ArgumentParser(prog="bench/harness/train.py", description=__doc__)
    parser.add_argument("--binary", required=True, help="rwsplit built with -Cprofile-generate")
    parser.add_argument("--seconds", type=int, default=5, help="length of each sysbench run (default 5)")
    parser.add_argument("--cases", help="only these sysbench cases, by exact name, comma-separated (default all)")
    return parser.parse_args()


def cases(names):
    if names is None:
        return sysbench.CASES
    wanted = names.split(",")
    unknown = set(wanted) - {case.name for case in sysbench.CASES}
    if unknown:
        sys.exit(f"unknown cases {sorted(unknown)}; the cases are {[c.name for c in sysbench.CASES]}")
    return [case for case in sysbench.CASES if case.name in wanted]


def main():
    args = options()
    chosen = cases(args.cases)
    with sandbox_with_targets(args.binary) as (sandbox, targets):
        bench.load_data(sandbox)
        targets["rwsplit"] = Rwsplit(args.binary, sandbox)
        for case in chosen:
            result, _ = sysbench.run(case, targets["rwsplit"].port, args.seconds)
            print(f"==> trained on {case.name}: {result.queries:,} queries", file=sys.stderr, flush=True)
        # Leaving the block stops rwsplit with SIGTERM: it shuts down
        # cleanly, and the profile is written as the process exits.


if __name__ == "__main__":
    main()
