"""Turning runs into medians, target verdicts, Markdown and a chart."""

import statistics

import sysbench

TARGETS = ("direct", "haproxy", "rwsplit")
# One colour per target in both charts.
COLOURS = {"direct": "tab:blue", "haproxy": "tab:orange", "rwsplit": "tab:green"}
FIELDS = ("tps", "qps", "p50_ms", "p95_ms", "p99_ms", "cpu_us_per_query", "migrations_per_query", "steal_pct")


def summarize(runs: list) -> list:
    """Medians per (case, target), in the order the cases ran."""
    summary = []
    cases = list(dict.fromkeys(run["case"] for run in runs))
    for case in cases:
        for target in TARGETS:
            mine = [r for r in runs if r["case"] == case and r["target"] == target]
            if not mine:
                continue
            row = {"case": case, "target": target, "runs": len(mine)}
            for field in FIELDS:
                values = [r[field] for r in mine if r.get(field) is not None]
                row[field] = statistics.median(values) if values else None
            row["retried"] = sum(r["retried"] for r in mine)
            row["reconnects"] = sum(r["reconnects"] for r in mine)
            summary.append(row)
    return summary


def row_of(summary: list, case: str, target: str):
    return next((r for r in summary if r["case"] == case and r["target"] == target), None)


def round_pairs(runs: list, case: str, field: str) -> list:
    """rwsplit's `field` and HAProxy's, round by round: each pair measured
    minutes apart at most, where the medians of a run may come from
    different rounds."""
    def by_round(target):
        return {r["round"]: r[field] for r in runs if r["case"] == case and r["target"] == target and r.get(field)}
    mine, theirs = by_round("rwsplit"), by_round("haproxy")
    return [(mine[n], theirs[n]) for n in sorted(mine.keys() & theirs.keys())]


def round_ratios(runs: list, case: str, field: str) -> list:
    """rwsplit's `field` over HAProxy's, round by round."""
    return [mine / theirs for mine, theirs in round_pairs(runs, case, field)]


def spread(ratios: list, met) -> str:
    """The range of per-round ratios and how many of them meet a target."""
    if not ratios:
        return ""
    return f"{min(ratios):.3f}–{max(ratios):.3f}x, {sum(map(met, ratios))} of {len(ratios)}"


def verdicts(summary: list, idle: dict, runs: list = ()) -> list:
    """The speed targets of the benchmark issue: (target, measured, met,
    round by round)."""
    out = []
    point_cases = [r["case"] for r in summary if r["case"].startswith("point_select") and r["target"] == "rwsplit"]
    for case in point_cases:
        mine, theirs = row_of(summary, case, "rwsplit"), row_of(summary, case, "haproxy")
        ratio = mine["tps"] / theirs["tps"]
        rounds = spread(round_ratios(runs, case, "tps"), lambda r: r >= 1.0)
        out.append((f"{case}: rwsplit throughput >= HAProxy's", f"{ratio:.3f}x", ratio >= 1.0, rounds))
    for case in dict.fromkeys(r["case"] for r in summary):
        mine, theirs = row_of(summary, case, "rwsplit"), row_of(summary, case, "haproxy")
        if mine and theirs and mine["cpu_us_per_query"] and theirs["cpu_us_per_query"]:
            ratio = mine["cpu_us_per_query"] / theirs["cpu_us_per_query"]
            rounds = spread(round_ratios(runs, case, "cpu_us_per_query"), lambda r: r <= 1.1)
            out.append((f"{case}: CPU per query <= 1.1x HAProxy's", f"{ratio:.3f}x", ratio <= 1.1, rounds))
    for case in ("point_select ps t1", "point_select text t1"):
        direct = row_of(summary, case, "direct")
        haproxy = row_of(summary, case, "haproxy")
        rwsplit = row_of(summary, case, "rwsplit")
        if direct and haproxy and rwsplit:
            ours = rwsplit["p50_ms"] - direct["p50_ms"]
            theirs = haproxy["p50_ms"] - direct["p50_ms"]
            measured = f"{ours * 1000:.0f} us vs {theirs * 1000:.0f} us"
            bucket = sysbench.bucket_width(haproxy["p50_ms"]) * 1000
            resolution = f"p50s read to a histogram bucket: {bucket:.0f} us here"
            out.append((f"{case}: added p50 <= HAProxy's", measured, ours <= theirs, resolution))
    if idle:
        slope = idle["kib_per_connection"]
        out.append(("idle client connection <= 16 KiB", f"{slope:.1f} KiB", slope <= 16, ""))
    # Any error but a deadlock ends a sysbench run and the harness; what is
    # left to count are reconnections.
    reconnects = sum(r["reconnects"] for r in summary)
    out.append(("zero errors in every run (every run completed, no reconnects)", str(reconnects), reconnects == 0, ""))
    return out


def fmt(value, digits=1):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def remeasured(result: dict) -> str:
    """What the run says of the rounds it measured again for stolen time."""
    if "max_steal_pct" not in result:
        return ""  # a run from before the harness measured rounds again
    discarded = result.get("discarded", [])
    still = sum(1 for r in result["runs"] if r["steal_pct"] > result["max_steal_pct"])
    text = (f"A round during which more than {result['max_steal_pct']:g} % of the machine's CPU time "
            f"was stolen by the hypervisor is measured again: {len(discarded)} "
            f"{'time' if len(discarded) == 1 else 'times'} in this run")
    if still:
        text += f", and {still} kept {'round' if still == 1 else 'rounds'} still over it after the last attempt"
    return text + ". "


# How a run ordered its targets (`order` in its JSON; runs before step 23
# have none, and ran them in a fixed order).
ORDER = {
    "fixed": "run in turn (direct, HAProxy, rwsplit, direct, ...)",
    "rotated": "run in turn, each round starting one target further along "
               "(direct, HAProxy, rwsplit; HAProxy, rwsplit, direct; ...)",
}


def markdown(result: dict) -> str:
    """The results section of docs/benchmarks.md."""
    lines = [
        f"Run on {result['date']} — {result['machine']['cpu']} ({result['machine']['cores']} cores), "
        f"{result['machine']['kernel']}; {result['machine']['mariadb']}, {result['machine']['haproxy']}, "
        f"{result['machine']['sysbench']}; rwsplit {result['machine']['rwsplit']}.",
        "",
        f"Command: `{result['command']}` — {result['rounds']} rounds of {result['seconds']} s per case "
        f"and target, {ORDER[result.get('order', 'fixed')]}; medians shown. "
        f"{remeasured(result)}Raw runs: `bench/results/{result['file']}`.",
        "",
        "### Targets",
        "",
        "Round by round: the ratio of the two proxies measured in the same round, "
        "its range over the rounds and how many rounds met the target.",
        "",
        "| target | measured (medians) | met | round by round |",
        "|---|---|---|---|",
    ]
    for name, measured, met, rounds in verdicts(result["summary"], result.get("idle"), result["runs"]):
        lines.append(f"| {name} | {measured} | {'yes' if met else '**no**'} | {rounds} |")
    lines += [
        "",
        "### sysbench",
        "",
        "| case | target | tps | qps | p50 ms | p95 ms | p99 ms | deadlocks retried | proxy CPU µs/query "
        "| proxy CPU migrations/query | machine CPU stolen % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['case']} | {r['target']} | {fmt(r['tps'])} | {fmt(r['qps'])} | {fmt(r['p50_ms'], 3)} "
            f"| {fmt(r['p95_ms'], 3)} | {fmt(r['p99_ms'], 3)} | {r['retried']} | {fmt(r['cpu_us_per_query'])} "
            f"| {fmt(r['migrations_per_query'], 2)} | {fmt(r.get('steal_pct'))} |"
        )
    idle = result.get("idle")
    if idle:
        steps = ", ".join(f"{k} clients: {v:,} KiB" for k, v in idle["rss_kib"].items())
        lines += ["", "### Memory per idle client connection", "", f"rwsplit RSS — {steps}; "
                  f"slope **{idle['kib_per_connection']} KiB per connection**."]
    classify = result.get("classify")
    if classify:
        lines += ["", "### Classification (`cargo bench --bench classify`)", "",
                  "| corpus | work | ns per statement |", "|---|---|---:|"]
        for row in classify:
            lines.append(f"| {row['corpus']} | {row['what']} | {row['ns_per_statement']:.0f} |")
    lines += ["", "![throughput and CPU per query](benchmarks.png)"]
    return "\n".join(lines)


def chart(summary: list, path: str):
    """Throughput by case and target, and proxy CPU per query."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in summary))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8))
    width = 0.27
    for i, target in enumerate(TARGETS):
        rows = [row_of(summary, c, target) for c in cases]
        x = [j + (i - 1) * width for j in range(len(cases))]
        top.bar(x, [r["tps"] if r else 0 for r in rows], width, label=target, color=COLOURS[target])
        if target != "direct":
            bottom.bar(
                [j + (i - 1.5) * width for j in range(len(cases))],
                [r["cpu_us_per_query"] or 0 if r else 0 for r in rows],
                width,
                label=target,
                color=COLOURS[target],
            )
    for axis, title in ((top, "transactions per second (median)"), (bottom, "proxy CPU µs per query (median)")):
        axis.set_xticks(range(len(cases)))
        axis.set_xticklabels(cases, rotation=20, ha="right", fontsize=8)
        axis.set_title(title)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
