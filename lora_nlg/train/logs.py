"""Training logs: the human lines of microsoft/LoRA's gpt2_ft.py, the same numbers as jsonl, and a reader.

`<work_dir>/log.txt` gets every line printed to stdout, with train, eval and save lines in the
reference's exact format (as in the prior reproduction's README), so logs of either tree, or of the reference,
read alike (the eval line ends in a space):

    | epoch   2 step     2100 |    207 batches | lr 0.000164 | ms/batch 728.20 | loss  2.57 | avg loss  2.67 | ppl 14.51
    ----------------------------------------------------------------------------------------------------
    | Eval   1 at step     2000 | time: 35.43s | valid loss  1.36 | valid ppl  3.91 | best ppl  3.91
    ----------------------------------------------------------------------------------------------------
    saving checkpoint trained_models/e2e/model.3000.safetensors

`loss` is the last batch's loss, `avg loss` / `ppl` the mean over the batches since the previous
train line, `lr` the rate of the line's batch. `ms/batch` counts training time only (the
reference's also includes any evaluation in the interval, hence its slow line after each eval).
`<work_dir>/log.jsonl` holds one object per event (`start`, `train`, `eval`, `save`, `overflow`
(an --fp16 update skipped), `diverged`, `end`) with more fields (tokens/s, real and padded tokens
per batch, ...). A resumed run appends to both, marking where it took over; `read_log` then drops
what the killed run logged after the state it resumed from, so the events read as one unbroken run.
"""
import json
import math
import os
import re
import sys

from tqdm import tqdm

from lora_nlg.util.errors import NLGError
from lora_nlg.util.jsonl import read_jsonl

LOG_TEXT = "log.txt"
LOG_JSONL = "log.jsonl"
SEPARATOR = "-" * 100

_NUMBER = r"([-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf))"
TRAIN_LINE = re.compile(
    r"\| epoch +(\d+) step +(\d+) \| +(\d+) batches \| lr " + _NUMBER + r" *\| ms/batch +" + _NUMBER
    + r" \| loss +" + _NUMBER + r" \| avg loss +" + _NUMBER + r" \| ppl +" + _NUMBER)
EVAL_LINE = re.compile(
    r"\| Eval +(\d+) at step +(\d+) \| time: +" + _NUMBER + r"s \| valid loss +" + _NUMBER
    + r" \| valid ppl +" + _NUMBER + r"(?: \| best ppl +" + _NUMBER + r")?")
SAVE_LINE = re.compile(r"saving checkpoint (\S+)$")
RESUME_LINE = re.compile(r"resuming from step (\d+)")
CHECKPOINT_STEP = re.compile(r"model\.(\d+)\.\w+$")


def train_line(event):
    return (f"| epoch {event['epoch']:3d} step {event['step']:>8d} | {event['batch']:>6d} batches "
            f"| lr {event['lr']:.3g} | ms/batch {event['ms_per_batch']:5.2f} | loss {event['loss']:5.2f} "
            f"| avg loss {event['avg_loss']:5.2f} | ppl {event['ppl']:5.2f}")


def eval_line(event):
    return (f"| Eval {event['eval']:3d} at step {event['step']:>8d} | time: {event['time_s']:5.2f}s "
            f"| valid loss {event['valid_loss']:5.2f} | valid ppl {event['valid_ppl']:5.2f} "
            f"| best ppl {event['best_ppl']:5.2f} ")


def overflow_line(event):
    return (f"fp16 overflow at step {event['step']} (epoch {event['epoch']}): non-finite gradients, update skipped; "
            f"loss scale {event['previous_scale']:g} -> {event['scale']:g}")


def resume_line(event):
    return f"resuming from step {event['resume_step']} (epoch {event['epoch']}, batch {event['batch']})"


def perplexity(loss):
    """exp(loss), inf instead of an OverflowError for a diverged loss."""
    return math.exp(loss) if loss < 700 else math.inf


def _json_safe(value):
    """JSON has no NaN / Infinity: non-finite floats are written as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def drop_partial_line(path):
    """Cut a last line without its newline (a run killed while writing it), so a resumed log stays readable."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class TrainLog:
    """Writes lines to stdout and log.txt and events to log.jsonl, flushed as they come.

    `echo` prints a line on the terminal (tqdm.write while a progress bar is shown). A fresh run
    starts both files anew; `append=True` (resume) continues them. `muted=True` (every rank of a
    several-process run but rank 0, the one writer) writes and prints nothing.
    """

    def __init__(self, work_dir, append=False, echo=print, muted=False):
        self.text = self.jsonl = None
        self.echo = echo
        if muted:
            return
        os.makedirs(work_dir, exist_ok=True)
        mode = "a" if append else "w"
        if append:
            for name in (LOG_TEXT, LOG_JSONL):
                drop_partial_line(os.path.join(work_dir, name))
        self.text = open(os.path.join(work_dir, LOG_TEXT), mode, encoding="utf-8")
        self.jsonl = open(os.path.join(work_dir, LOG_JSONL), mode, encoding="utf-8")

    def line(self, text):
        if self.text is not None:
            self.echo(text)
            self.write_text(text)

    def write_text(self, text):
        """A line for log.txt only (not the terminal: e.g. the error that the CLI prints itself)."""
        if self.text is not None:
            self.text.write(text + "\n")
            self.text.flush()

    def event(self, event_type, /, **fields):
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(_json_safe({"type": event_type, **fields})) + "\n")
            self.jsonl.flush()

    def train(self, **fields):
        self.line(train_line(fields))
        self.event("train", **fields)

    def eval(self, **fields):
        self.line(SEPARATOR)
        self.line(eval_line(fields))
        self.line(SEPARATOR)
        self.event("eval", **fields)

    def save(self, path, **fields):
        self.line(f"saving checkpoint {path}")
        self.event("save", path=path, **fields)

    def overflow(self, **fields):
        """An --fp16 update skipped for non-finite gradients: step, epoch, previous_scale and the new scale."""
        self.line(overflow_line(fields))
        self.event("overflow", **fields)

    def close(self):
        for file in (self.text, self.jsonl):
            if file is not None:
                file.close()


def progress_bar(total, initial, shown=True):
    """A step progress bar on an interactive terminal only, so redirected output stays plain log lines
    (and `shown=False`: only rank 0 of several processes shows one)."""
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False,
                disable=not (shown and sys.stdout.isatty()))


def echo_above_bar(text):
    tqdm.write(text, file=sys.stdout)


# ---------------------------------------------------------------- reading

def parse_log_lines(lines):
    """Events of human log lines (ours, or the reference's gpt2_ft.py output); other lines are skipped."""
    events = []
    for line in lines:
        line = line.rstrip("\n")
        if match := TRAIN_LINE.search(line):
            epoch, step, batch = (int(g) for g in match.groups()[:3])
            lr, ms, loss, avg_loss, ppl = (float(g) for g in match.groups()[3:])
            events.append({"type": "train", "epoch": epoch, "step": step, "batch": batch, "lr": lr,
                           "ms_per_batch": ms, "loss": loss, "avg_loss": avg_loss, "ppl": ppl})
        elif match := EVAL_LINE.search(line):
            number, step = int(match.group(1)), int(match.group(2))
            time_s, loss, ppl = (float(g) for g in match.groups()[2:5])
            best = float(match.group(6)) if match.group(6) is not None else None
            events.append({"type": "eval", "eval": number, "step": step, "time_s": time_s,
                           "valid_loss": loss, "valid_ppl": ppl, "best_ppl": best})
        elif match := SAVE_LINE.match(line):
            step = CHECKPOINT_STEP.search(match.group(1))
            events.append({"type": "save", "path": match.group(1), "step": int(step.group(1)) if step else None})
        elif match := RESUME_LINE.match(line):
            events.append({"type": "start", "resume_step": int(match.group(1)), "step": int(match.group(1))})
    return events


def read_log_jsonl(path):
    """The events of a log.jsonl; a malformed line is an NLGError naming file and line."""
    events = []
    for number, event in read_jsonl(path):
        if "type" not in event:
            raise NLGError(f"{path}: line {number}: not a log event (needs an object with 'type')")
        events.append(event)
    return events


def read_log(path):
    """Events of a log.jsonl or a human log (log.txt, or a captured reference stdout), as one unbroken run.

    At each resume marker, events with a step beyond the resumed step are dropped: the killed run
    logged them after its last saved state, and the resumed run logs those steps again.
    """
    if str(path).endswith(".jsonl"):
        events = read_log_jsonl(path)
    else:
        try:
            with open(path, encoding="utf-8") as f:
                events = parse_log_lines(f)
        except OSError as error:
            raise NLGError(f"{path}: cannot read ({error.strerror})") from None
    merged = []
    for event in events:
        if event["type"] == "start" and event.get("resume_step") is not None:
            merged = [e for e in merged if e.get("step") is None or e["step"] <= event["resume_step"]]
        merged.append(event)
    return merged

