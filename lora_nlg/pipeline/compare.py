"""Two training runs side by side: their curves, how far apart they are, and their final metrics.

A run is a gpt2_ft.py work dir (its log.jsonl, and scores.json when the pipeline has scored it) or a
log file (log.jsonl, log.txt, or the captured stdout of the reference's gpt2_ft.py). Curves are
read with lora_nlg.train.logs, so a resumed run counts as one unbroken run. Differences are taken over
the steps both runs logged; the markdown table is what scripts/compare_logs.py prints.
"""
import json
import math
import os
from typing import NamedTuple

import numpy as np

from lora_nlg.train.logs import LOG_JSONL, read_log
from lora_nlg.util.errors import NLGError

SCORES_FILE = "scores.json"
# (curve key, event type, event field, label): what a train line and an eval line carry
CURVES = (
    ("loss", "train", "loss", "loss"),
    ("avg_loss", "train", "avg_loss", "avg loss"),
    ("ppl", "train", "ppl", "ppl"),
    ("valid_loss", "eval", "valid_loss", "valid loss"),
    ("valid_ppl", "eval", "valid_ppl", "valid ppl"),
    ("lr", "train", "lr", "learning rate"),
)
CURVE_LABELS = {key: label for key, _, _, label in CURVES}


class Curve(NamedTuple):
    steps: np.ndarray  # int64, increasing
    values: np.ndarray  # float64 (nan / inf where the log says so)


class Run(NamedTuple):
    label: str
    curves: dict  # curve key -> Curve (keys without any event are absent)
    train_events: list
    eval_events: list
    scores: dict  # scores.json of the run dir, or {}


class CurveDiff(NamedTuple):
    common_steps: int
    max_abs: float
    mean_abs: float


def log_path(run):
    """The log of a run given as a work dir (its log.jsonl) or as a log file."""
    if os.path.isdir(run):
        path = os.path.join(run, LOG_JSONL)
        if not os.path.isfile(path):
            raise NLGError(f"{run}: no {LOG_JSONL} in this directory (is it a gpt2_ft.py work dir?)")
        return path
    if not os.path.isfile(run):
        raise NLGError(f"{run}: no such run directory or log file")
    return run


def read_scores(run):
    """scores.json of a run directory ({} when there is none): a flat object of numbers."""
    path = os.path.join(run if os.path.isdir(run) else os.path.dirname(run), SCORES_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            scores = json.load(f)
    except (OSError, ValueError) as error:
        raise NLGError(f"{path}: unreadable scores ({error})") from None
    if not isinstance(scores, dict) or not all(isinstance(v, (int, float)) for v in scores.values()):
        raise NLGError(f"{path}: not a flat JSON object of numbers")
    return scores


def curves_of(events):
    """Curve key -> Curve of the train and eval events (non-finite values, logged as strings, become floats)."""
    curves = {}
    for key, kind, field, _ in CURVES:
        points = [(e["step"], float(e[field])) for e in events if e["type"] == kind and field in e]
        if points:
            steps, values = zip(*points)
            curves[key] = Curve(np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64))
    return curves


def read_run(run, label):
    path = log_path(run)
    events = read_log(path)
    train_events = [e for e in events if e["type"] == "train"]
    if not train_events:
        raise NLGError(f"{path}: no training lines (nothing to compare)")
    return Run(label, curves_of(events), train_events, [e for e in events if e["type"] == "eval"],
               read_scores(run))


def curve_diff(a, b):
    """Max and mean |a - b| over the steps both curves have (None when they share none)."""
    common, index_a, index_b = np.intersect1d(a.steps, b.steps, return_indices=True)
    if len(common) == 0:
        return None
    diff = np.abs(a.values[index_a] - b.values[index_b])
    return CurveDiff(len(common), float(diff.max()), float(diff.mean()))


def final_metrics(run):
    """Metric name -> value at the end of a run, ms/batch and tokens/s as medians over its train lines
    (the first line of a Jittor run includes kernel compilation), then its scores.json entries."""
    last = run.train_events[-1]
    metrics = {"last step": last["step"], "final loss": float(last["loss"]), "final avg loss": float(last["avg_loss"])}
    if run.eval_events:
        best = min(run.eval_events, key=lambda e: float(e["valid_loss"]))
        metrics["final valid loss"] = float(run.eval_events[-1]["valid_loss"])
        metrics["final valid ppl"] = float(run.eval_events[-1]["valid_ppl"])
        metrics["best valid ppl"] = float(best["valid_ppl"])
        metrics["best step"] = best["step"]
    for name, field in (("ms/batch (median)", "ms_per_batch"), ("tokens/s (median)", "tokens_per_s")):
        values = [float(e[field]) for e in run.train_events if field in e]
        if values:
            metrics[name] = float(np.median(values))
    metrics.update(run.scores)
    return metrics


def number(value):
    """4 significant digits; integers as they are; a missing value as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def markdown_table(a, b):
    """The curve differences, then the final metrics of both runs, as markdown."""
    lines = ["| curve | common steps | max abs diff | mean abs diff |", "|---|---:|---:|---:|"]
    for key, _, _, label in CURVES:
        diff = curve_diff(a.curves[key], b.curves[key]) if key in a.curves and key in b.curves else None
        if diff is None:
            lines.append(f"| {label} | 0 | n/a | n/a |")
        else:
            lines.append(f"| {label} | {diff.common_steps} | {number(diff.max_abs)} | {number(diff.mean_abs)} |")
    metrics_a, metrics_b = final_metrics(a), final_metrics(b)
    names = list(metrics_a) + [name for name in metrics_b if name not in metrics_a]
    lines += ["", f"| metric | {a.label} | {b.label} |", "|---|---:|---:|"]
    lines += [f"| {name} | {number(metrics_a.get(name))} | {number(metrics_b.get(name))} |" for name in names]
    return "\n".join(lines) + "\n"
