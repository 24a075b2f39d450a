"""lora_nlg.pipeline.stages: a finished stage is skipped, a changed or broken one re-runs (and everything downstream
of it), a failure names its log, a rerun keeps nothing stale or damaged."""
import fcntl
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from lora_nlg.pipeline.stages import (
    Call,
    Command,
    Damaged,
    Ref,
    Stage,
    StageFailed,
    clean_leftovers,
    named_outputs,
    plan_status,
    run_stages,
)
from lora_nlg.util.errors import NLGError
from lora_nlg.util.work_dir import LOCK_FILE

# appends one "x" to argv[1] per run, so a file's length counts the runs; writes argv[2] (if given) too
APPEND = "import sys; open(sys.argv[1], 'a').write('x'); len(sys.argv) > 2 and open(sys.argv[2], 'w').write('out')"


def appender(counter, output=None):
    return Command([sys.executable, "-c", APPEND, str(counter)] + ([str(output)] if output else []))


def runs(counter):
    return len(counter.read_text()) if counter.exists() else 0


def chain(tmp_path, first_flag="a"):
    """Two stages: `first` writes out1 (its command carries `first_flag`), `second` depends on it."""
    first = Stage("first", str(tmp_path), "first",
                  [Command(appender(tmp_path / "n1", tmp_path / "out1").argv + [first_flag])],
                  outputs=[str(tmp_path / "out1")])
    second = Stage("second", str(tmp_path), "second", [appender(tmp_path / "n2", tmp_path / "out2")],
                   outputs=[str(tmp_path / "out2")], upstream=[first])
    return first, second


def quiet(_text):
    pass


def test_finished_stages_are_skipped_on_the_next_run(tmp_path):
    times = run_stages(chain(tmp_path), echo=quiet)
    assert [t.seconds is not None for t in times] == [True, True]
    times = run_stages(chain(tmp_path), echo=quiet)
    assert [t.seconds for t in times] == [None, None]
    assert (runs(tmp_path / "n1"), runs(tmp_path / "n2")) == (1, 1)


def test_changed_settings_rerun_the_stage_and_everything_downstream(tmp_path):
    run_stages(chain(tmp_path, "a"), echo=quiet)
    run_stages(chain(tmp_path, "b"), echo=quiet)
    assert (runs(tmp_path / "n1"), runs(tmp_path / "n2")) == (2, 2)


def test_a_deleted_output_reruns_only_its_stage(tmp_path):
    run_stages(chain(tmp_path), echo=quiet)
    (tmp_path / "out2").unlink()
    times = run_stages(chain(tmp_path), echo=quiet)
    assert [t.seconds is None for t in times] == [True, False]
    assert (runs(tmp_path / "n1"), runs(tmp_path / "n2")) == (1, 2)


def test_failing_command_stops_with_its_log_path_and_leaves_no_done_marker(tmp_path):
    fail = Command([sys.executable, "-c", "import sys; print('bad thing happened'); sys.exit(3)"])
    after = Stage("after", str(tmp_path), "after", [appender(tmp_path / "n")])
    stage = Stage("broken", str(tmp_path), "broken", [fail])
    with pytest.raises(StageFailed) as error:
        run_stages([stage, after], echo=quiet)
    assert "exit code 3" in str(error.value) and stage.log_path in str(error.value)
    assert "bad thing happened" in open(stage.log_path).read()
    assert not stage.is_done() and runs(tmp_path / "n") == 0


def test_stage_that_writes_no_output_fails(tmp_path):
    stage = Stage("lazy", str(tmp_path), "lazy", [appender(tmp_path / "n")], outputs=[str(tmp_path / "missing")])
    with pytest.raises(StageFailed, match="without writing .*missing"):
        run_stages([stage], echo=quiet)


def test_results_flow_into_downstream_commands_through_refs(tmp_path):
    def produce(log):
        (tmp_path / "made").write_text("m")
        log("made it")
        return {"file": str(tmp_path / "made")}
    first = Stage("maker", str(tmp_path), "maker", [Call(produce, "make a file")])
    first.outputs = [Ref(first, "file")]
    copy = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"
    second = Stage("user", str(tmp_path), "user",
                   [Command([sys.executable, "-c", copy, Ref(first, "file"), str(tmp_path / "copy")])],
                   outputs=[str(tmp_path / "copy")], upstream=[first])
    lines = []
    run_stages([first, second], echo=lines.append)
    assert (tmp_path / "copy").read_text() == "m" and "made it" in lines
    assert first.results() == {"file": str(tmp_path / "made")}


def test_interrupted_stage_resumes_with_its_resume_flag(tmp_path):
    """A stage started before with the same key, whose state file exists, gets the resume flag."""
    echo_args = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))"
    state = tmp_path / "state"

    def stage():
        return Stage("train", str(tmp_path), "train", [Command(
            [sys.executable, "-c", echo_args, str(tmp_path / "args"), "--go"], resume=("--resume", str(state)))])
    run_stages([stage()], echo=quiet)
    assert (tmp_path / "args").read_text() == "--go"  # first run: nothing to resume
    os.remove(stage().path("done.json"))  # as if it had been killed: started, never finished
    state.write_text("s")
    run_stages([stage()], echo=quiet)
    assert (tmp_path / "args").read_text() == "--go --resume"


def test_a_state_file_older_than_the_attempt_is_not_resumed(tmp_path):
    """A state left by an earlier, different run must not be continued with other settings."""
    echo_args = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:])); sys.exit(int(sys.argv[3]))"
    state = tmp_path / "state"
    state.write_text("old run")
    os.utime(state, (0, 0))

    def stage(code):
        return Stage("train", str(tmp_path), "train", [Command(
            [sys.executable, "-c", echo_args, str(tmp_path / "args"), "--go", code], resume=("--resume", str(state)))])
    with pytest.raises(StageFailed):
        run_stages([stage("1")], echo=quiet)  # crashes before writing any state
    with pytest.raises(StageFailed):
        run_stages([stage("1")], echo=quiet)  # same key, an attempt was started: but the state predates it
    assert (tmp_path / "args").read_text() == "--go 1"


def test_call_errors_become_stage_failures_naming_the_log(tmp_path):
    def broken(_log):
        raise NLGError("data.jsonl: line 3: bad")
    stage = Stage("call", str(tmp_path), "call", [Call(broken, "break")])
    with pytest.raises(StageFailed, match="data.jsonl: line 3: bad; its log: .*call.log"):
        run_stages([stage], echo=quiet)


def test_named_outputs_key_and_check_like_their_list_and_the_role_stays_out_of_the_key(tmp_path):
    """Names (and a role) are for the planner: a stage's key, marker and output check are those of the list."""
    step = [appender(tmp_path / "n", tmp_path / "a")]
    listed = Stage("s", str(tmp_path), "s", step, outputs=[str(tmp_path / "a"), str(tmp_path / "b")])
    named = Stage("s", str(tmp_path), "s", step, outputs=named_outputs(first=str(tmp_path / "a"),
                                                                       second=str(tmp_path / "b")), role="a model")
    assert named.key == listed.key and named.outputs.second == str(tmp_path / "b")
    with pytest.raises(StageFailed, match="without writing .*b;"):
        run_stages([named], echo=quiet)
    (tmp_path / "b").write_text("b")
    run_stages([named], echo=quiet)
    assert listed.is_done() and named.marker()["outputs"] == [str(tmp_path / "a"), str(tmp_path / "b")]


# ---------------------------------------------------------------- reruns keep nothing stale or damaged

def checked_chain(tmp_path):
    """`chain`, each stage checking that its output holds "out" (what the command writes)."""
    first, second = chain(tmp_path)

    def holds_out(outputs, _results):
        for path in outputs:
            if open(path).read() != "out":
                raise Damaged(path, f"{len(open(path).read())} bytes, expected 3")
    first.verify = second.verify = holds_out
    return first, second


def snapshot(folder):
    """Every file under `folder`: (bytes, mtime_ns)."""
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_stage_that_runs_again_runs_everything_downstream_again(tmp_path):
    run_stages(chain(tmp_path), echo=quiet)
    (tmp_path / "out1").unlink()
    lines = []
    run_stages(chain(tmp_path), echo=lines.append)
    assert (runs(tmp_path / "n1"), runs(tmp_path / "n2")) == (2, 2)
    assert f"[pipeline] stage first: output {tmp_path / 'out1'} is missing; running it again" in lines
    assert "[pipeline] stage second: its upstream stage first ran again; running it again" in lines


def test_a_damaged_output_fails_its_check_and_its_stage_and_downstream_run_again(tmp_path):
    run_stages(checked_chain(tmp_path), echo=quiet)
    (tmp_path / "out1").write_text("o")
    lines = []
    run_stages(checked_chain(tmp_path), echo=lines.append)
    assert (runs(tmp_path / "n1"), runs(tmp_path / "n2")) == (2, 2)
    assert lines[0] == f"[pipeline] stage first: output {tmp_path / 'out1'} is damaged (1 bytes, expected 3); " \
                       f"running it again"
    assert (tmp_path / "out1").read_text() == "out" and checked_chain(tmp_path)[1].is_done()


def test_an_output_rewritten_after_its_stage_finished_runs_the_stage_again(tmp_path):
    """Same content, but not the file the stage wrote (its size and mtime are recorded): no check can vouch for it."""
    run_stages(checked_chain(tmp_path), echo=quiet)
    out2 = tmp_path / "out2"
    os.utime(out2, ns=(out2.stat().st_atime_ns, out2.stat().st_mtime_ns + 10**9))
    lines = []
    run_stages(checked_chain(tmp_path), echo=lines.append)
    assert (runs(tmp_path / "n1"), runs(tmp_path / "n2")) == (1, 2)
    assert f"[pipeline] stage second: output {out2} changed after the stage wrote it (rewritten); running it again" \
        in lines


def test_a_stage_whose_input_changed_since_it_ran_runs_again(tmp_path):
    """The upstream stage ran again in a pipeline run that stopped before this stage: the input it consumed is not
    the one there now, although nothing upstream runs this time."""
    run_stages(chain(tmp_path), echo=quiet)
    (tmp_path / "out1").unlink()
    run_stages(chain(tmp_path)[:1], echo=quiet)  # stopped (killed) after the first stage
    lines = []
    times = run_stages(chain(tmp_path), echo=lines.append)
    assert [t.seconds is None for t in times] == [True, False]
    assert f"[pipeline] stage second: input {tmp_path / 'out1'} changed since the stage ran (rewritten); " \
           f"running it again" in lines


def test_an_unchanged_rerun_skips_everything_and_changes_no_file(tmp_path):
    run_stages(checked_chain(tmp_path), echo=quiet)
    before = snapshot(tmp_path)
    lines = []
    times = run_stages(checked_chain(tmp_path), echo=lines.append)
    assert [t.seconds for t in times] == [None, None] and all("done earlier, skipped" in line for line in lines)
    assert snapshot(tmp_path) == before


def test_a_dry_run_says_what_runs_again_and_why_and_writes_nothing(tmp_path):
    run_stages(checked_chain(tmp_path), echo=quiet)
    (tmp_path / "out1").write_text("o")
    before = snapshot(tmp_path)
    assert [(stage.name, why) for stage, why in plan_status(checked_chain(tmp_path))] == [
        ("first", f"output {tmp_path / 'out1'} is damaged (1 bytes, expected 3)"),
        ("second", "its upstream stage first runs again")]
    assert snapshot(tmp_path) == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert [why for _, why in plan_status(chain(fresh))] == ["", ""]  # never ran: "to run", no reason


def test_a_marker_written_before_inputs_were_recorded_still_sees_a_newer_input(tmp_path):
    run_stages(chain(tmp_path), echo=quiet)
    for stage in chain(tmp_path):  # as the markers of an older version: no identities
        marker = stage.marker()
        del marker["inputs"], marker["output_files"]
        pathlib.Path(stage.path("done.json")).write_text(json.dumps(marker))
    assert [t.seconds for t in run_stages(chain(tmp_path), echo=quiet)] == [None, None]
    (tmp_path / "out1").write_text("out")  # newer than the second stage's result
    times = run_stages(chain(tmp_path), echo=quiet)
    assert [t.seconds is None for t in times] == [True, False]


def test_a_rerun_that_fails_leaves_the_stage_unfinished(tmp_path):
    """The done-marker goes when a stage starts again: a failed (or killed) rerun is never taken as done."""
    fail = {"now": False}

    def step(_log):
        if fail["now"]:
            raise NLGError("broken")
        (tmp_path / "out").write_text("out")

    def stage():
        return Stage("s", str(tmp_path), "s", [Call(step, "write out")], outputs=[str(tmp_path / "out")])
    run_stages([stage()], echo=quiet)
    (tmp_path / "out").write_text("")
    os.utime(tmp_path / "out", ns=(0, 0))
    fail["now"] = True
    with pytest.raises(StageFailed):
        run_stages([stage()], echo=quiet)
    assert stage().marker() is None and not stage().is_done()
    fail["now"] = False
    lines = []
    run_stages([stage()], echo=lines.append)
    assert lines[0].endswith("running (log " + stage().log_path + ")") and stage().is_done()


def test_an_output_that_fails_its_check_right_after_the_stage_ran_stops_the_pipeline(tmp_path):
    def never(outputs, _results):
        raise Damaged(outputs[0], "2 lines for 3 inputs")
    stage = Stage("s", str(tmp_path), "s", [appender(tmp_path / "n", tmp_path / "out")],
                  outputs=[str(tmp_path / "out")], verify=never)
    with pytest.raises(StageFailed, match=rf"^stage 's' finished, but its output {tmp_path / 'out'} is damaged "
                                          rf"\(2 lines for 3 inputs\); its log: .*s\.log$"):
        run_stages([stage], echo=quiet)
    assert stage.marker() is None and stage.marker("started") is None  # the next run starts it over


def test_json_outputs_must_parse(tmp_path):
    write = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"

    def stage(text):
        return Stage("s", str(tmp_path), "s", [Command([sys.executable, "-c", write, str(tmp_path / "a.json"), text])],
                     outputs=[str(tmp_path / "a.json")])
    run_stages([stage('{"a": 1}')], echo=quiet)
    (tmp_path / "a.json").write_text('{"a": ')
    assert stage('{"a": 1}').check().startswith(f"output {tmp_path / 'a.json'} is damaged (invalid JSON (")


def test_a_stage_run_again_starts_over_and_drops_the_finished_runs_state(tmp_path):
    """Training whose checkpoint was damaged trains anew: the finished run's resumable state is not continued."""
    record = ("import os, sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[3:]) + ' state:' + "
              "str(os.path.exists(sys.argv[2]))); open(sys.argv[2], 'w').write('s'); open(sys.argv[4], 'w').write('c')")
    state, out = tmp_path / "state", tmp_path / "ckpt"

    def stage():
        return Stage("train", str(tmp_path), "train", [Command(
            [sys.executable, "-c", record, str(tmp_path / "args"), str(state), "--go", str(out)],
            resume=("--resume", str(state)))], outputs=[str(out)])
    run_stages([stage()], echo=quiet)
    out.write_text("damaged")
    run_stages([stage()], echo=quiet)
    assert (tmp_path / "args").read_text() == f"--go {out} state:False"
    assert "note: removed " + str(state) in open(stage().log_path).read()


def test_leftovers_of_killed_writes_are_removed_where_the_stages_write_unless_a_live_run_holds_the_folder(tmp_path):
    first, second = chain(tmp_path)
    busy = tmp_path / "busy"
    (tmp_path / "stages").mkdir()
    busy.mkdir()
    leftovers = [tmp_path / "out1.x1.partial", tmp_path / "stages" / "first.done.json.x2.partial",
                 tmp_path / "extra.partial"]
    for path in [*leftovers, busy / "model.safetensors.x3.partial"]:
        path.write_text("half")
    with open(busy / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as gpt2_ft.py holds its --work_dir
        removed = clean_leftovers([first, second, Stage("b", str(busy), "b", [])], echo=quiet)
    assert sorted(removed) == sorted(map(str, leftovers))
    assert (busy / "model.safetensors.x3.partial").exists()


RUNNER = """import sys, time
from lora_nlg.pipeline.stages import Command, Stage, run_stages
sleeper = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
run_stages([Stage("sleep", sys.argv[1], "sleep", [Command([sys.executable, "-c", sleeper, sys.argv[1] + "/pid"])])])
"""


def test_killing_the_pipeline_kills_its_running_command(tmp_path):
    """kill -9 of the pipeline leaves no command running on, writing into files the next run reads."""
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path)], stdout=subprocess.DEVNULL,
                              cwd=pathlib.Path(__file__).resolve().parents[2])
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    runner.kill()
    runner.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def alive(pid):
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
