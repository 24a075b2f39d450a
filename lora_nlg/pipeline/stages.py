"""Run a pipeline as stages that are skipped once done: re-running a pipeline continues where it stopped.

A stage is a list of steps (a subprocess `Command`, or a Python `Call`) with a key: the sha256 of
what it runs and of its upstream stages' keys. When it finishes, its done-marker
`<folder>/stages/<slug>.done.json` records the key, its outputs and the identity (size and mtime_ns; of a
folder, of its files) of each output and of each input it consumed (every output of its upstream stages).
It counts as DONE, and a rerun skips it, only while
- the marker holds the current key (else its settings, or something upstream, changed),
- every output exists, passes the stage's `verify` (lines, JSON, checkpoints: the planner's checks) and is
  the file the stage wrote (same identity),
- every input is the one it consumed (an upstream stage that ran again rewrote its outputs), and no upstream
  stage ran in this pipeline run.
So a stage whose output was damaged runs again (said in one line), and so does everything downstream of it;
nothing else re-runs. A stage about to run drops its done-marker first, so a killed attempt never looks
finished. A stage whose run was interrupted finds a `.started.json` with the same key, which lets a resumable
command continue (gpt2_ft.py --resume) instead of restarting. `clean_leftovers` removes the `*.partial`
files a killed write left in the folders the stages write (lora_nlg.util.files.atomic_open).

Each stage's output (stdout and stderr of its commands) goes to `<folder>/stages/<slug>.log` and
to the terminal; a failing command stops the pipeline with a `StageFailed` naming that log.
Arguments of a command may be `Ref(stage, key)`: a result of a finished upstream stage (e.g. the
final checkpoint of a training run), read from its marker when the command starts. Outputs that later
stages read carry names (`named_outputs`: `prepare.outputs.test`), so no stage depends on the order of
another's files; `Stage.role` says what a stage is to its planner (e.g. the model it evaluates).
"""
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from lora_nlg.util.errors import CheckpointError, NLGError
from lora_nlg.util.files import atomic_open
from lora_nlg.util.work_dir import LOCK_FILE, remove_partial_files

MARKER_DIR = "stages"
MISSING = "missing"


class StageFailed(NLGError):
    """A stage's command failed or did not write its outputs; the message names the stage log."""


class Damaged(NLGError):
    """A finished stage's output that fails its check: `path` and why, for one line."""

    def __init__(self, path, why):
        why = " ".join(str(why).split())  # one line, whatever a reader's message held
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


class Ref(NamedTuple):
    """A result of an upstream stage, resolved when the command runs."""
    stage: "Stage"
    key: str

    def __str__(self):
        return f"{{{self.stage.name}: {self.key}}}"


@dataclass
class Command:
    """A subprocess: argv items are strings or Refs. `resume` (flag, path): when the stage was started
    before with the same key and that attempt wrote `path`, the flag is added to continue that run; a state at
    `path` from any other run (a finished one, one with other settings) is removed first, so the command starts
    over (gpt2_ft.py refuses to start over a resumable state without being told)."""
    argv: list
    cwd: str | None = None
    resume: tuple | None = None

    def describe(self):
        text = " ".join(shlex.quote(str(item)) for item in self.argv)
        return f"(cd {shlex.quote(self.cwd)} && {text})" if self.cwd else text

    def resumes(self, attempt_started):
        """`attempt_started`: when an unfinished attempt with the same key began (or None). A state file older
        than that attempt belongs to another run and is not resumed."""
        return bool(self.resume and attempt_started is not None and os.path.exists(self.resume[1])
                    and os.path.getmtime(self.resume[1]) >= attempt_started)

    def stale_state(self, attempt_started):
        """The state file of another run, which this attempt does not continue (None if there is none)."""
        if self.resume and os.path.exists(self.resume[1]) and not self.resumes(attempt_started):
            return self.resume[1]
        return None

    def resolved(self, attempt_started):
        """argv with Refs resolved, and the resume flag when this attempt continues its state."""
        argv = [resolve(item) for item in self.argv]
        return argv + [self.resume[0]] if self.resumes(attempt_started) else argv


@dataclass
class Call:
    """An in-process step: function(log) -> dict of results; `description` (stable text) goes into the key."""
    function: Callable
    description: str

    def describe(self):
        return self.description


def resolve(item):
    return item.stage.results()[item.key] if isinstance(item, Ref) else str(item)


def named_outputs(**outputs):
    """A stage's outputs by name, for the stages that read them. A NamedTuple iterates as the list of its
    values, so the key, the marker and the checks stay those of that list."""
    return namedtuple("Outputs", outputs)(**outputs)


# ---------------------------------------------------------------- identities of files

def identity(path):
    """What tells one version of a file from another without reading it: [size, mtime_ns]; of a folder, that of
    each file in it by name (dot-files and *.partial left out); None when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return [info.st_size, info.st_mtime_ns]
    return {name: identity(os.path.join(path, name)) for name in sorted(os.listdir(path))
            if not name.startswith(".") and not name.endswith(".partial")}


def identities(paths):
    return {path: identity(path) for path in paths}


def change(recorded, current):
    """How a file changed between two identities (None if it did not), in a few words."""
    if recorded == current:
        return None
    if current is None:
        return "it is gone"
    if recorded is None:
        return "it is new"
    if isinstance(recorded, dict) and isinstance(current, dict):
        names = sorted(set(recorded) ^ set(current)) + sorted(n for n in set(recorded) & set(current)
                                                              if recorded[n] != current[n])
        return f"its file {names[0]} changed" + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")
    if isinstance(recorded, list) and isinstance(current, list) and recorded[0] != current[0]:
        return f"size {recorded[0]} -> {current[0]} bytes"
    return "rewritten"


def newest_change(value):
    """The latest mtime_ns in an identity (0 for a missing file or an empty folder)."""
    if isinstance(value, dict):
        return max(map(newest_change, value.values()), default=0)
    return value[1] if value else 0


# ---------------------------------------------------------------- checks of outputs

@contextlib.contextmanager
def checking(path):
    """Inside the block, a failure to read `path` (an NLGError naming it, or an OS / decoding error) is
    `Damaged(path, why)`."""
    try:
        yield
    except Damaged:
        raise
    except CheckpointError as error:  # names the file of a checkpoint that failed (e.g. its .json)
        raise Damaged(error.path, error.problem) from None
    except NLGError as error:
        text = str(error)
        raise Damaged(path, text[len(path) + 2:] if text.startswith(f"{path}: ") else text) from None
    except OSError as error:
        raise Damaged(path, f"cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise Damaged(path, "not UTF-8 text") from None
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise Damaged(path, f"unreadable ({type(error).__name__}: {error})") from None


def read_json_output(path):
    """The JSON value of an output file; Damaged if it does not parse."""
    with checking(path):
        with open(path, encoding="utf-8") as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as error:
                raise Damaged(path, f"invalid JSON ({error})") from None


def read_text_output(path):
    """The text of an output file, exactly as stored."""
    with checking(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8")


def count_lines(path):
    """Lines of a file whose lines end with a newline (a last one without it counts too), read in blocks."""
    count, last = 0, b"\n"
    with checking(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                count += block.count(b"\n")
                last = block[-1:]
    return count + (last != b"\n")


def expect_lines(path, count, expected, what):
    """Damaged unless the file has `expected` lines, one for each of the `expected` `what` (e.g. "test inputs")."""
    if count != expected:
        raise Damaged(path, f"{count} lines for {expected} {what}")


def verify_exist_and_parse(outputs):
    """The checks every stage gets: its outputs exist; the JSON ones parse."""
    for path in outputs:
        if not os.path.exists(path):
            raise Damaged(path, MISSING)
        if path.endswith(".json") and os.path.isfile(path):
            read_json_output(path)


# ---------------------------------------------------------------- stages

@dataclass
class Stage:
    """One named stage. `outputs`: paths (or Refs) that must exist after it ran (recorded in the marker), a list
    or `named_outputs`. `verify(outputs, results)`: the planner's check of a finished stage's outputs (resolved,
    in the same shape), raising Damaged; it runs before the stage is skipped and right after it ran."""
    name: str
    folder: str
    slug: str
    steps: list
    outputs: list | tuple = field(default_factory=list)
    upstream: list = field(default_factory=list)
    collect: Callable | None = None  # () -> dict of results after the steps ran (e.g. the final checkpoint)
    role: object = None  # what the stage is to its planner (not part of the key): the planner's own data
    verify: Callable | None = None  # not part of the key either: checks change nothing the stage computes

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

    def finished(self):
        """The done-marker if it holds the current key (the stage finished with these settings), else None."""
        marker = self.marker()
        return marker if isinstance(marker, dict) and marker.get("key") == self.key else None

    def is_done(self):
        return self.check() is None

    def check(self):
        """None when the stage is done (see the module's doc); else why not: "" when it never finished with these
        settings, otherwise one phrase (an output damaged or changed, an input changed)."""
        marker = self.finished()
        if marker is None:
            return ""
        try:
            outputs = list(marker["outputs"])
            verify_exist_and_parse(outputs)
            if self.verify is not None:
                self.verify(self.shaped(outputs), marker.get("results", {}))
        except Damaged as damage:
            return f"output {damage.path} is {'missing' if damage.why == MISSING else f'damaged ({damage.why})'}"
        except (KeyError, TypeError):
            return "its done-marker is incomplete"
        for path, recorded in (marker.get("output_files") or {}).items():
            moved = change(recorded, identity(path))
            if moved:
                return f"output {path} changed after the stage wrote it ({moved})"
        return self.changed_input(marker)

    def changed_input(self, marker):
        """Why an input is not the one the stage consumed (None if every one is)."""
        current = self.input_files()
        if "inputs" not in marker:  # a marker from before inputs were recorded: is an input newer than the stage?
            finished = marker.get("time", float("inf")) * 1e9
            newer = [path for path in current if newest_change(identity(path)) > finished]
            return f"input {newer[0]} changed after the stage ran" if newer else None
        recorded = marker["inputs"]
        for path in sorted(set(recorded) | set(current)):
            moved = change(recorded.get(path), identity(path) if path in current else None)
            if moved:
                return f"input {path} changed since the stage ran ({moved})"
        return None

    def input_files(self):
        """The outputs of the upstream stages, as their markers list them (what this stage consumes)."""
        files = []
        for stage in self.upstream:
            marker = stage.finished()
            files += marker["outputs"] if marker else []
        return list(dict.fromkeys(files))

    def shaped(self, paths):
        """Resolved output paths in the shape of `outputs` (named when those are named)."""
        return self.outputs._make(paths) if hasattr(self.outputs, "_make") and \
            len(paths) == len(self.outputs) else list(paths)

    def results(self):
        marker = self.finished()
        if marker is None:
            raise StageFailed(f"{self.path('done.json')}: stage {self.name!r} has not finished with the current "
                              f"settings, so its results are not available")
        return marker["results"]

    def folders(self):
        """The folders this stage writes: its own, its markers', and those of its outputs (known before it runs)."""
        folders = [self.folder, os.path.dirname(self.path("done.json"))]
        for output in self.outputs:
            if not isinstance(output, Ref):
                folders += [os.path.dirname(output)] + ([output] if os.path.isdir(output) else [])
        return folders


def write_marker(path, content):
    with atomic_open(path) as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------- running

_PR_SET_PDEATHSIG = 1


def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


def dies_with(parent, libc=_libc()):
    """A preexec_fn: the child is killed when the pipeline dies (kill -9 included), so a killed pipeline leaves
    no command running on, writing into files the next run reads."""
    def setup():
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the pipeline died before that took effect
            os._exit(137)
    return setup


def run_command(argv, cwd, log, echo):
    """Run one subprocess, copying its output line by line to the log file and `echo`; return its exit code."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, encoding="utf-8", errors="replace", bufsize=1,
                                   preexec_fn=dies_with(os.getpid()))
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
    started, done = stage.marker("started"), stage.finished()
    # an attempt with these settings began and never finished (a finished one being run again starts over)
    resuming = bool(started and started.get("key") == stage.key and done is None)
    attempt_started = started["time"] if resuming else None
    os.makedirs(os.path.dirname(stage.log_path), exist_ok=True)
    if not resuming:  # (first: a state file older than this attempt is never resumed)
        write_marker(stage.path("started.json"), {"key": stage.key, "name": stage.name, "time": time.time()})
    with contextlib.suppress(FileNotFoundError):
        os.remove(stage.path("done.json"))  # from here on, a killed attempt is unfinished, not done
    inputs = identities(stage.input_files())  # what this attempt consumes
    clock = time.perf_counter()
    results = {}
    with open(stage.log_path, "a" if resuming else "w", encoding="utf-8") as log:
        for step in stage.steps:
            if isinstance(step, Command):
                stale = step.stale_state(attempt_started)
                if stale:
                    os.remove(stale)
                    log.write(f"note: removed {stale}: the state of another run (finished, or with other "
                              f"settings), which this attempt does not continue\n")
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
        try:
            verify_exist_and_parse(outputs)
            if stage.verify is not None:
                stage.verify(stage.shaped(outputs), results)
        except Damaged as damage:
            log.write(f"error: output {damage}\n")
            os.remove(stage.path("started.json"))  # the next run starts it over instead of resuming this attempt
            raise StageFailed(f"stage {stage.name!r} finished, but its output {damage.path} is damaged "
                              f"({damage.why}); its log: {stage.log_path}") from None
    seconds = time.perf_counter() - clock
    write_marker(stage.path("done.json"), {"key": stage.key, "name": stage.name, "outputs": outputs,
                                           "results": results, "seconds": seconds, "time": time.time(),
                                           "steps": [step.describe() for step in stage.steps],
                                           "inputs": inputs, "output_files": identities(outputs)})
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


def why_again(stage, pending, verb):
    """None: the stage is done and is skipped. Else it runs: "" when it never finished with these settings,
    otherwise why it runs again. `pending`: the stages that run before it in this pipeline run ("ran" or "runs":
    `verb`)."""
    if stage.finished() is None:
        return ""
    ahead = [upstream for upstream in stage.upstream if any(upstream is other for other in pending)]
    if ahead:
        return f"its upstream stage {ahead[0].name} {verb} again"
    return stage.check()


def plan_status(stages):
    """[(stage, None if it will be skipped, else "" or why it runs again)] for a dry run, nothing run or written:
    a stage downstream of one that will run runs too."""
    pending, status = [], []
    for stage in stages:
        why = why_again(stage, pending, "runs")
        if why is not None:
            pending.append(stage)
        status.append((stage, why))
    return status


def run_stages(stages, echo=say):
    """Run every stage that is not done, in order; print and return their times (skipped ones: None)."""
    times, ran = [], []
    for stage in stages:
        why = why_again(stage, ran, "ran")
        if why is None:
            echo(f"[pipeline] {stage.name}: done earlier, skipped (marker {stage.path('done.json')})")
            times.append(StageTime(stage.name, None))
            continue
        if why:
            echo(f"[pipeline] stage {stage.name}: {why}; running it again")
        echo(f"[pipeline] {stage.name}: running (log {stage.log_path})")
        seconds = run_stage(stage, echo)
        ran.append(stage)
        echo(f"[pipeline] {stage.name}: finished in {format_seconds(seconds)}")
        times.append(StageTime(stage.name, seconds))
    return times


def in_use(folder):
    """Whether a live run holds `<folder>/.lock` (lora_nlg.util.work_dir): its writes may be under way."""
    try:
        lock = open(os.path.join(folder, LOCK_FILE), encoding="utf-8")
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def clean_leftovers(stages, extra=(), echo=say):
    """Remove the `*.partial` files that killed writes left in the folders the stages (and the planner: `extra`)
    write; a folder a live run holds is left to it. Returns the removed paths."""
    folders = [*extra, *(folder for stage in stages for folder in stage.folders())]
    removed = []
    for folder in dict.fromkeys(os.path.abspath(f) for f in folders):
        if os.path.isdir(folder) and not in_use(folder):
            removed += remove_partial_files(folder, echo)
    return removed
