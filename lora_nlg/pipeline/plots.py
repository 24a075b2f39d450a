"""Training-curve figures: the curves of two runs overlaid, one subplot per curve, in one PNG.

Built on matplotlib's Figure object, not pyplot: no GUI backend and no global state, so it runs the
same on a headless server and inside other programs.
"""
from matplotlib.figure import Figure

from lora_nlg.pipeline.compare import CURVE_LABELS, CURVES
from lora_nlg.util.files import atomic_open

LOG_SCALE = ("ppl", "valid_ppl")  # perplexities span orders of magnitude early in training
STYLES = ({"color": "tab:blue", "linestyle": "-"}, {"color": "tab:orange", "linestyle": "--"})


def plot_runs(runs, out, title=None):
    """Write a PNG with one subplot per curve, each run's curve overlaid (run 1 solid, run 2 dashed)."""
    fig = Figure(figsize=(15, 8))
    axes = fig.subplots(2, 3)
    for ax, (key, kind, _, _) in zip(axes.flat, CURVES):
        for run, style in zip(runs, STYLES):
            if key in run.curves:
                curve = run.curves[key]
                ax.plot(curve.steps, curve.values, label=run.label, linewidth=1.4,
                        marker="o" if kind == "eval" else None, markersize=4, **style)
        ax.set_title(CURVE_LABELS[key])
        ax.set_xlabel("step")
        if key in LOG_SCALE:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(out, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)
