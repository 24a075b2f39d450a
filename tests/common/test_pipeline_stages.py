"""lora_nlg.pipeline.stages: a finished stage is skipped, a changed or broken one re-runs, a failure names its log."""
import os
import sys

import pytest

from lora_nlg.pipeline.stages import Call, Command, Ref, Stage, StageFailed, named_outputs, run_stages
from lora_nlg.util.errors import NLGError

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
