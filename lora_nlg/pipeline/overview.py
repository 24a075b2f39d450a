"""scripts/run_all.py's summary: every dataset x framework x model of a preset's runs in one markdown file.

Scores are scaled as the paper's tables (E2E BLEU / METEOR / ROUGE-L in points, NIST and CIDEr as they are;
WebNLG and DART BLEU in points, METEOR and TER as fractions; SQuAD F1 / EM in points). Under each dataset's
table: the two frameworks' difference on its main metric (the first column) and what each adapter adds to the
zero-shot base, so the two claims of a demo (the frameworks agree, LoRA learns) are read off, not computed.
"""
from lora_nlg.pipeline import presets
from lora_nlg.pipeline.stages import format_seconds

ZERO_SHOT = "base, zero-shot"


def scaled(row, key, factor):
    value = row["scores"].get(key)
    return None if value is None else value * factor


def cell(value):
    return "n/a" if value is None else f"{value:.2f}"


def count(value):
    return "0" if not value else f"{value:,}"


def dataset_section(dataset, rows):
    """The markdown lines of one dataset: a row per (framework, model), then the two comparisons.
    `rows`: dicts with framework, model, trainable (None: zero-shot), train_seconds and scores."""
    metrics = presets.DATASETS[dataset].main_metrics
    lines = [f"### {dataset}", "",
             "| framework | model | trainable params | training | " + " | ".join(m[1] for m in metrics) + " |",
             "|---|---|---|---|" + "---|" * len(metrics)]
    for row in rows:
        training = "-" if row["train_seconds"] is None else format_seconds(row["train_seconds"])
        lines.append(f"| {row['framework']} | {row['model']} | {count(row['trainable'])} | {training} | "
                     + " | ".join(cell(scaled(row, key, factor)) for key, _, factor in metrics) + " |")
    key, label, factor = metrics[0]
    lines += ["", *comparisons(rows, key, label, factor), ""]
    return lines


def comparisons(rows, key, label, factor):
    """One line per model on the main metric: |pytorch - jittor|, and per framework the gain over zero-shot."""
    lines = []
    by = {(row["framework"], row["model"]): scaled(row, key, factor) for row in rows}
    for model in dict.fromkeys(row["model"] for row in rows):
        values = {framework: by.get((framework, model)) for framework in presets.FRAMEWORKS}
        parts = []
        if all(value is not None for value in values.values()):
            parts.append(f"frameworks differ by {abs(values['pytorch'] - values['jittor']):.2f}")
        if model != ZERO_SHOT:
            gains = [f"{framework} {value - by[framework, ZERO_SHOT]:+.2f}" for framework, value in values.items()
                     if value is not None and by.get((framework, ZERO_SHOT)) is not None]
            if gains:
                parts.append("over the zero-shot base: " + ", ".join(gains))
        if parts:
            lines.append(f"- {model}, {label}: " + "; ".join(parts))
    return lines


def markdown(title, command, sections, run_times, total_seconds):
    """The whole summary: `sections` (dataset -> rows, in order), `run_times` [(run name, seconds its stages took
    when they ran, wall seconds of this call)]. The stages' times, recorded in their done-markers, add up to what
    the whole run costs even when this call skipped stages an earlier one finished (each shared stage, the base,
    counts once, in the first run that uses it)."""
    lines = [f"# {title}", "", f"`{command}`", ""]
    for dataset, rows in sections.items():
        lines += dataset_section(dataset, rows)
    lines += ["| run | its stages' time | wall time of this call |", "|---|---|---|"]
    lines += [f"| {name} | {format_seconds(stages)} | {format_seconds(wall)} |" for name, stages, wall in run_times]
    lines += [f"| **total** | {format_seconds(sum(stages for _, stages, _ in run_times))} | "
              f"{format_seconds(total_seconds)} |", ""]
    return "\n".join(lines)
