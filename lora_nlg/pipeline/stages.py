"""Run a pipeline as stages that are skipped once done: re-running a pipeline continues where it stopped.

A stage is a list of steps (a subprocess `Command`, or a Python `Call`) with a key: the sha256 of
what it runs and of its upstream stages' keys. It counts as DONE when its done-marker
`<folder>/stages/<slug>.done.json` holds the current key and every output the marker lists still
exists. So a stage re-runs when its settings, or anything upstream, changed, or an output was
deleted, and nothing else re-runs. A stage whose run was interrupted finds a `.started.json` with
the same key, which lets a resumable command continue (gpt2_ft.py --resume) instead of restarting.

Each stage's output (stdout and stderr of its commands) goes to `<folder>/stages/<slug>.log` and
to the terminal; a failing command stops the pipeline with a `StageFailed` naming that log.
Arguments of a command may be `Ref(stage, key)`: a result of a finished upstream stage (e.g. the
final checkpoint of a training run), read from its marker when the command starts.
"""
import hashlib
import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from lora_nlg.util.errors import NLGError
from lora_nlg.util.files import atomic_open

MARKER_DIR = "stages"


class StageFailed(NLGError):
    """A stage's command failed or did not write its outputs; the message names the stage log."""


class Ref(NamedTuple):
    """A result of an upstream stage, resolved when the command runs."""
    stage: "Stage"
    key: str

    def __str__(self):
        return f"{{{self.stage.name}: {self.key}}}"


@dataclass
class Command:
    """A subprocess: argv items are strings or Refs. `resume` (flag, path): when the stage was started
    before with the same key and that attempt wrote `path`, the flag is added to continue that run."""
    argv: list
    cwd: str | None = None
    resume: tuple | None = None

    def describe(self):
        text = " ".join(shlex.quote(str(item)) for item in self.argv)
        return f"(cd {shlex.quote(self.cwd)} && {text})" if self.cwd else text

    def resolved(self, attempt_started):
        """argv with Refs resolved; `attempt_started`: when an unfinished attempt with the same key began (or None).
        A state file older than that attempt belongs to another run and is not resumed."""
        argv = [resolve(item) for item in self.argv]
        if self.resume and attempt_started is not None and os.path.exists(self.resume[1]) \
                and os.path.getmtime(self.resume[1]) >= attempt_started:
            argv.append(self.resume[0])
        return argv


@dataclass
class Call:
    """An in-process step: function(log) -> dict of results; `description` (stable text) goes into the key."""
    function: Callable
    description: str

    def describe(self):
        return self.description


def resolve(item):
    return item.stage.results()[item.key] if isinstance(item, Ref) else str(item)


@dataclass
class Stage:
    """One named stage. `outputs`: paths (or Refs) that must exist after it ran (recorded in the marker)."""
    name: str
    folder: str
    slug: str
    steps: list
    outputs: list = field(default_factory=list)
    upstream: list = field(default_factory=list)
    collect: Callable | None = None  # () -> dict of results after the steps ran (e.g. the final checkpoint)

    @property
    def key(self):
        text = json.dumps({"name": self.name, "steps": [step.describe() for step in self.steps],
                           "outputs": [str(o) for o in self.outputs],
                           "upstream": [stage.key for stage in self.upstream]}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, suffix):
        return os.path.join(self.folder, MARKER_DIR, f"{self.slug}.{suffix}")

    @property
    def log_path(self):
        return self.path("log")

    def marker(self, kind="done"):
        try:
            with open(self.path(f"{kind}.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def is_done(self):
        marker = self.marker()
        return bool(marker and marker.get("key") == self.key and all(os.path.exists(p) for p in marker["outputs"]))

    def results(self):
        marker = self.marker()
        if not (marker and marker.get("key") == self.key):
            raise StageFailed(f"{self.path('done.json')}: stage {self.name!r} has not finished with the current "
                              f"settings, so its results are not available")
        return marker["results"]


def write_marker(path, content):
    with atomic_open(path) as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")


def run_command(argv, cwd, log, echo):
    """Run one subprocess, copying its output line by line to the log file and `echo`; return its exit code."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, encoding="utf-8", errors="replace", bufsize=1)
    except OSError as error:
        log.write(f"cannot start {argv[0]}: {error.strerror}\n")
        return 127
    with process:
        for line in process.stdout:
            log.write(line)
            log.flush()
            echo(line.rstrip("\n"))
    return process.returncode


def run_stage(stage, echo):
    """Run the stage's steps (it is not done); write its done-marker. Returns the seconds it took."""
    started, done = stage.marker("started"), stage.marker()
    # an attempt with these settings began and never finished (a finished one that lost an output starts over)
    resuming = bool(started and started.get("key") == stage.key and not (done and done.get("key") == stage.key))
    attempt_started = started["time"] if resuming else None
    os.makedirs(os.path.dirname(stage.log_path), exist_ok=True)
    if not resuming:
        write_marker(stage.path("started.json"), {"key": stage.key, "name": stage.name, "time": time.time()})
    clock = time.perf_counter()
    results = {}
    with open(stage.log_path, "a" if resuming else "w", encoding="utf-8") as log:
        for step in stage.steps:
            if isinstance(step, Command):
                argv = step.resolved(attempt_started)
                log.write(f"$ {Command(argv, step.cwd).describe()}\n")
                log.flush()
                code = run_command(argv, step.cwd, log, echo)
                if code != 0:
                    raise StageFailed(f"stage {stage.name!r} failed (exit code {code}); its log: {stage.log_path}")
            else:
                log.write(f"# {step.description}\n")
                results.update(call_step(stage, step.function, log, echo))
        if stage.collect is not None:
            results.update(call_step(stage, stage.collect, log, echo, with_log=False))
    outputs = [resolve_output(output, results) for output in stage.outputs]
    missing = [path for path in outputs if not os.path.exists(path)]
    if missing:
        raise StageFailed(f"stage {stage.name!r} finished without writing {missing[0]}; its log: {stage.log_path}")
    seconds = time.perf_counter() - clock
    write_marker(stage.path("done.json"), {"key": stage.key, "name": stage.name, "outputs": outputs,
                                           "results": results, "seconds": seconds, "time": time.time(),
                                           "steps": [step.describe() for step in stage.steps]})
    return seconds


def call_step(stage, function, log, echo, with_log=True):
    """Run an in-process step; its NLGError becomes the stage's failure (written to the stage log too)."""
    def write(text):
        log.write(text + "\n")
        echo(text)
    try:
        return (function(write) if with_log else function()) or {}
    except NLGError as error:
        write(f"error: {error}")
        raise StageFailed(f"stage {stage.name!r} failed: {error}; its log: {stage.log_path}") from None


def resolve_output(output, results):
    """An output path; a Ref to the stage's own results names one of them (e.g. its final checkpoint)."""
    if isinstance(output, Ref):
        return results[output.key] if output.key in results else resolve(output)
    return output


class StageTime(NamedTuple):
    name: str
    seconds: float | None  # None: skipped (done before)


def format_seconds(seconds):
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s" if minutes else f"{rest:.1f}s"


def say(text):
    print(text, flush=True)


def run_stages(stages, echo=say):
    """Run every stage that is not done, in order; print and return their times (skipped ones: None)."""
    times = []
    for stage in stages:
        if stage.is_done():
            echo(f"[pipeline] {stage.name}: done earlier, skipped (marker {stage.path('done.json')})")
            times.append(StageTime(stage.name, None))
            continue
        echo(f"[pipeline] {stage.name}: running (log {stage.log_path})")
        seconds = run_stage(stage, echo)
        echo(f"[pipeline] {stage.name}: finished in {format_seconds(seconds)}")
        times.append(StageTime(stage.name, seconds))
    return times
