"""`bench/run --pool`: the targets over the rounds of several saved runs.
One run's median of six rounds moves by more than the margins left
between the two proxies (docs/benchmarks.md, step 23); pooled, the rounds
of several runs say where the ratio itself stands, and how sure that is."""

import random
import statistics

import report

# Resamples for the interval of the median. Its ends are rounds' values
# (or midpoints of two), so another seed moves them by a step between
# neighbouring rounds: up to about 0.01 in a ratio at 36 rounds.
RESAMPLES = 10_000


def median_interval(runs: list) -> tuple:
    """A 95 % bootstrap interval for the median of all the rounds of
    `runs` (each run's list of values). The rounds of one run share the
    machine's state of those minutes and move together, so each
    resample draws runs, then rounds within each run drawn: the interval
    is as wide as the runs disagree, not only as the rounds do. Seeded:
    the same runs give the same table."""
    rng = random.Random(0)

    def resample():
        drawn = rng.choices(runs, k=len(runs))
        return statistics.median([value for run in drawn for value in rng.choices(run, k=len(run))])

    medians = sorted(resample() for _ in range(RESAMPLES))
    return medians[int(0.025 * RESAMPLES)], medians[int(0.975 * RESAMPLES) - 1]


def verdict(low: float, high: float, met) -> str:
    """Whether the whole interval meets the target, none of it, or it
    straddles the line."""
    if met(low) and met(high):
        return "met"
    if not met(low) and not met(high):
        return "**missed**"
    return "within the noise"


class Target:
    """A target compared round by round: `compare` makes one value of a
    round's (rwsplit, HAProxy) pair of `field`, `met` judges a value, and
    `show` writes one."""

    def __init__(self, name, case, field, compare, met, show):
        self.name, self.case, self.field = name, case, field
        self.compare, self.met, self.show = compare, met, show

    def values(self, runs: list) -> list:
        return [self.compare(mine, theirs) for mine, theirs in report.round_pairs(runs, self.case, self.field)]


def ratio(mine, theirs):
    return mine / theirs


def times(value):
    return f"{value:.3f}x"


def added_us(mine, theirs):
    """rwsplit's p50 less HAProxy's, in µs: the added latency of one less
    the other's, since both add to the same direct connection's."""
    return (mine - theirs) * 1000


def micros(value):
    return f"{value:+.0f} µs"


def targets(runs: list) -> list:
    """The targets the pooled runs measured, as `bench/run` judges each run."""
    cases = list(dict.fromkeys(r["case"] for r in runs))
    points = [c for c in cases if c.startswith("point_select")]
    return [
        *(Target(f"{c}: rwsplit throughput >= HAProxy's", c, "tps", ratio, lambda v: v >= 1.0, times)
          for c in points),
        *(Target(f"{c}: CPU per query <= 1.1x HAProxy's", c, "cpu_us_per_query", ratio, lambda v: v <= 1.1, times)
          for c in cases),
        *(Target(f"{c}: added p50 <= HAProxy's (rwsplit's p50 less HAProxy's)", c, "p50_ms", added_us,
                 lambda v: v <= 0, micros)
          for c in points if c.endswith(" t1")),
    ]


def markdown(results: list, files: list) -> str:
    """The pooled table of `results` (saved runs, read from `files`)."""
    # Each run records "<commit> (<binary>)": every commit, every binary, once.
    builds = [result["machine"]["rwsplit"].partition(" ") for result in results]
    commits = ", ".join(dict.fromkeys(commit for commit, _, _ in builds))
    binaries = ", ".join(dict.fromkeys(binary for _, _, binary in builds))
    lines = [
        f"{len(results)} runs pooled ({', '.join(f'`{f}`' for f in files)}); rwsplit {commits} {binaries}.",
        "",
        "Each round compares the two proxies measured minutes apart at most; the median over all "
        "rounds, a 95 % bootstrap interval for it (runs resampled, then rounds within each), how many "
        "rounds met the target, and how many runs did by the median of their own rounds.",
        "",
        "| target | rounds | median | 95 % interval | rounds met | runs met | verdict |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for target in targets([r for result in results for r in result["runs"]]):
        by_run = [v for v in (target.values(result["runs"]) for result in results) if v]
        if not by_run:
            continue
        values = [value for run in by_run for value in run]
        low, high = median_interval(by_run)
        runs_met = sum(target.met(statistics.median(v)) for v in by_run)
        lines.append(f"| {target.name} | {len(values)} | {target.show(statistics.median(values))} "
                     f"| {target.show(low)} to {target.show(high)} "
                     f"| {sum(map(target.met, values))} of {len(values)} | {runs_met} of {len(by_run)} "
                     f"| {verdict(low, high, target.met)} |")
    return "\n".join(lines)
