"""`bench/run --pool`: the ratio targets over the rounds of several saved
runs. One run's median of six rounds moves by more than the margins left
between the two proxies (docs/benchmarks.md, step 23); pooled, the rounds
of several runs say where the ratio itself stands, and how sure that is."""

import random
import statistics

import report

# Resamples for the interval of the median: enough that its ends move by
# under 0.001 from one seed to another at 30 rounds.
RESAMPLES = 10_000


def median_interval(ratios: list, rng: random.Random) -> tuple:
    """A 95 % percentile-bootstrap interval for the median of `ratios`,
    resampling rounds as if independent. Rounds of one run share the
    machine's state of those minutes, so the true interval is somewhat
    wider."""
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(RESAMPLES))
    return medians[int(0.025 * RESAMPLES)], medians[int(0.975 * RESAMPLES) - 1]


def verdict(low: float, high: float, met) -> str:
    """Whether the whole interval meets the target, none of it, or it
    straddles the line."""
    if met(low) and met(high):
        return "met"
    if not met(low) and not met(high):
        return "**missed**"
    return "within the noise"


def targets(runs: list) -> list:
    """(target, field, test) for every ratio target the pooled runs measured."""
    cases = list(dict.fromkeys(r["case"] for r in runs))
    out = [(f"{c}: rwsplit throughput >= HAProxy's", c, "tps", lambda r: r >= 1.0)
           for c in cases if c.startswith("point_select")]
    out += [(f"{c}: CPU per query <= 1.1x HAProxy's", c, "cpu_us_per_query", lambda r: r <= 1.1) for c in cases]
    return out


def markdown(results: list, files: list) -> str:
    """The pooled table of `results` (saved runs, read from `files`)."""
    # Rounds renumbered run by run, so that each pairs only with its own.
    runs = [{**r, "round": (i, r["round"])} for i, result in enumerate(results) for r in result["runs"]]
    builds = ", ".join(dict.fromkeys(result["machine"]["rwsplit"] for result in results))
    lines = [
        f"{len(results)} runs pooled ({', '.join(f'`{f}`' for f in files)}); rwsplit {builds}.",
        "",
        "Each round's ratio of the two proxies, measured minutes apart at most; the median over all "
        "rounds, a 95 % bootstrap interval for it (rounds resampled as if independent), how many "
        "rounds met the target, and how many runs did by the median of their own rounds.",
        "",
        "| target | rounds | median ratio | 95 % interval | rounds met | runs met | verdict |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    rng = random.Random(0)
    for name, case, field, met in targets(runs):
        ratios = report.round_ratios(runs, case, field)
        if not ratios:
            continue
        low, high = median_interval(ratios, rng)
        by_run = [report.round_ratios(result["runs"], case, field) for result in results]
        runs_met = sum(met(statistics.median(r)) for r in by_run if r)
        lines.append(f"| {name} | {len(ratios)} | {statistics.median(ratios):.3f}x | {low:.3f}–{high:.3f}x "
                     f"| {sum(map(met, ratios))} of {len(ratios)} | {runs_met} of {sum(map(bool, by_run))} "
                     f"| {verdict(low, high, met)} |")
    return "\n".join(lines)
