"""The several-seed protocol of scripts/pipeline.py --seeds: per framework and model, the mean and the sample
standard deviation (n-1) of every metric over the seeds, and per metric the framework difference set against
the seed-to-seed spread.

`summarize(rows)` takes one row per scored model (framework, model label, seed or None for a seed-independent
one such as the zero-shot base, its folder and checkpoint, its scores.json) and returns what summary.json holds;
`markdown(result)` the lines summary.md shows of it. Spread: the pooled sample standard deviation of the two
frameworks' seeds, sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1)); a difference is "within the spread" when it is at
most that standard deviation.
"""
import math
import statistics

STD = "sample standard deviation (n-1) over the seeds"
RULE = ("|mean pytorch - mean jittor| against the pooled sample standard deviation of both frameworks' seeds; "
        "within the spread when the difference is at most that standard deviation")


def parse_seeds(text):
    """'110,111,112' -> [110, 111, 112]; ValueError with the reason for anything else (duplicates included)."""
    items = [item.strip() for item in text.split(",")]
    if not items or any(not item for item in items):
        raise ValueError(f"{text!r}: give seeds as integers separated by commas, e.g. 110,111,112")
    try:
        seeds = [int(item) for item in items]
    except ValueError:
        raise ValueError(f"{text!r}: give seeds as integers separated by commas, e.g. 110,111,112") from None
    if any(seed < 0 for seed in seeds):
        raise ValueError(f"{text!r}: seeds must be >= 0")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"{text!r}: seed {repeated[0]} given twice")
    return seeds


def mean_std(values):
    """(mean, sample standard deviation (n-1), None for a single value) of a list of numbers."""
    values = [float(value) for value in values]
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def pooled_std(groups):
    """The pooled sample standard deviation of groups given as (n, std); None when no group has two values."""
    dof = sum(n - 1 for n, _ in groups)
    if dof <= 0:
        return None
    return math.sqrt(sum((n - 1) * (std or 0.0) ** 2 for n, std in groups) / dof)


def metric_names(rows):
    """Every metric of the rows, in the order of their first appearance."""
    return list(dict.fromkeys(name for row in rows for name in row["scores"]))


def summarize(rows, seeds):
    """rows: [{"framework", "model", "seed" (None: does not depend on the seed), "folder", "checkpoint",
    "scores"}] in the plan's order -> {"seeds", "std", "rows": [one per framework and model: n, mean, std (None
    for one value) per metric, and each seed's scores], "framework_difference": [per model and metric]}."""
    metrics = metric_names(rows)
    groups = {}
    for row in rows:
        groups.setdefault((row["framework"], row["model"]), []).append(row)
    summary_rows = []
    for (framework, model), members in groups.items():
        stats = {name: mean_std([m["scores"][name] for m in members if name in m["scores"]])
                 for name in metrics if any(name in m["scores"] for m in members)}
        seeded = members[0]["seed"] is not None
        summary_rows.append({
            "framework": framework, "model": model, "n": len(members),
            "seeds": [m["seed"] for m in members] if seeded else None,
            "mean": {name: mean for name, (mean, _) in stats.items()},
            "std": {name: std for name, (_, std) in stats.items()},
            "per_seed": [{"seed": m["seed"], "folder": m["folder"], "checkpoint": m.get("checkpoint"),
                          "scores": m["scores"]} for m in members],
        })
    return {"seeds": list(seeds), "std": STD, "rule": RULE, "rows": summary_rows,
            "framework_difference": differences(summary_rows, metrics)}


def differences(rows, metrics):
    """Per model that both frameworks have and per metric: both means, |difference|, the pooled std (None when
    the model does not depend on the seed, or each framework has one seed) and whether it is within it."""
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["framework"]] = row
    found = []
    for model, frameworks in by_model.items():
        if set(frameworks) != {"pytorch", "jittor"}:
            continue
        a, b = frameworks["pytorch"], frameworks["jittor"]
        for name in metrics:
            if name not in a["mean"] or name not in b["mean"]:
                continue
            difference = abs(a["mean"][name] - b["mean"][name])
            spread = pooled_std([(a["n"], a["std"][name]), (b["n"], b["std"][name])]) \
                if a["seeds"] is not None and b["seeds"] is not None else None
            found.append({"model": model, "metric": name, "pytorch": a["mean"][name], "jittor": b["mean"][name],
                          "difference": difference, "pooled_std": spread,
                          "within_spread": None if spread is None or math.isnan(difference + spread)
                          else difference <= spread})
    return found


def number(value):
    return "n/a" if value is None else f"{value:.4f}"


def verdict(item):
    if item["pooled_std"] is None:
        return "no seed spread to compare with"
    if item["within_spread"] is None:
        return "not comparable (a score is NaN)"
    if item["within_spread"]:
        return "within the spread"
    ratio = f" ({item['difference'] / item['pooled_std']:.1f} std)" if item["pooled_std"] > 0 else ""
    return f"beyond the spread{ratio}"


def markdown(result):
    """The lines of summary.md for a --seeds run: mean ± std per framework and model, the framework difference
    against the seed spread per metric, and each seed's scores."""
    rows = result["rows"]
    metrics = metric_names([{"scores": row["mean"]} for row in rows])
    seeds = ", ".join(str(seed) for seed in result["seeds"])
    lines = [f"Seeds {seeds} (gpt2_ft.py --random_seed; the data, the test inputs and the base are the same for "
             f"every seed). Each cell: mean ± {result['std']}; the zero-shot base does not depend on the seed "
             f"(decoded once).", ""]
    lines += ["| framework | model | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for row in rows:
        cells = []
        for name in metrics:
            if name not in row["mean"]:
                cells.append("n/a")
            elif row["seeds"] is None:
                cells.append(number(row["mean"][name]))
            else:
                cells.append(f"{number(row['mean'][name])} ± {number(row['std'][name])} (n={row['n']})")
        lines.append(f"| {row['framework']} | {row['model']} | " + " | ".join(cells) + " |")
    lines.append("")
    compared = result["framework_difference"]
    for model in dict.fromkeys(item["model"] for item in compared):
        items = [item for item in compared if item["model"] == model]
        if items[0]["pooled_std"] is None and not any(row["model"] == model and row["seeds"] for row in rows):
            lines += [f"{model}: frameworks differ by " + ", ".join(
                f"{item['metric']} {number(item['difference'])}" for item in items) + " (decoded once, no seed spread)",
                ""]
            continue
        lines += [f"{model}: frameworks against the seed-to-seed spread ({result['rule']}):", ""]
        lines += [f"- {item['metric']}: frameworks differ by {number(item['difference'])}, seeds vary by "
                  f"{number(item['pooled_std'])} (std): {verdict(item)}" for item in items]
        lines.append("")
    seeded = [(row, member) for row in rows if row["seeds"] is not None for member in row["per_seed"]]
    if seeded:
        lines += ["Each seed:", "", "| framework | model | seed | checkpoint | " + " | ".join(metrics) + " |",
                  "|---|---|---|---|" + "---|" * len(metrics)]
        lines += [f"| {row['framework']} | {row['model']} | {member['seed']} | {member['checkpoint'] or 'n/a'} | "
                  + " | ".join(number(member["scores"].get(name)) for name in metrics) + " |"
                  for row, member in seeded]
        lines.append("")
    return lines
