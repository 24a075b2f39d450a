"""The run folder lock: a second run on the same --work_dir is refused, a killed run's folder is taken over and
cleaned, and a folder that cannot be used is a one-line error before any work."""
import os
import signal
import subprocess
import sys
import time

import pytest

from lora_nlg.util.work_dir import LOCK_FILE, WorkDirError, locked_work_dir, make_work_dir

HOLD = ("import sys, time\nfrom lora_nlg.util.work_dir import locked_work_dir\n"
        "with locked_work_dir(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")


def holder(path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "locked\n"
    return process


def test_a_second_run_on_a_locked_folder_is_refused_naming_the_first(tmp_path):
    process = holder(tmp_path / "run")
    try:
        with pytest.raises(WorkDirError, match=rf"--work_dir {tmp_path / 'run'}: in use by a running job "
                                               rf"\(pid {process.pid} on "):
            with locked_work_dir(str(tmp_path / "run")):
                pass
    finally:
        process.kill()
        process.wait()


def test_a_killed_runs_lock_and_partial_files_are_taken_over(tmp_path):
    run = tmp_path / "run"
    process = holder(run)
    (run / "model.5.safetensors.abc123.partial").write_bytes(b"half")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    notes = []
    with locked_work_dir(str(run), echo=notes.append):
        assert not list(run.glob("*.partial"))
    assert notes[0].startswith(f"note: {run / LOCK_FILE}: the run that held it (pid {process.pid} on ")
    assert notes[0].endswith(") is gone; taking it over")
    assert notes[1] == f"note: removed 1 partial file(s) of an interrupted write in {run}"
    assert (run / LOCK_FILE).read_text() == ""  # released cleanly: the next run reports nothing
    notes.clear()
    with locked_work_dir(str(run), echo=notes.append):
        pass
    assert notes == []


def test_the_lock_is_free_again_after_the_block(tmp_path):
    with locked_work_dir(str(tmp_path / "a")):
        pass
    started = time.perf_counter()
    with locked_work_dir(str(tmp_path / "a")):
        pass
    assert time.perf_counter() - started < 5


def test_a_file_in_the_way_or_an_unwritable_parent_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WorkDirError, match=rf"^--work_dir {tmp_path / 'file'}: exists and is not a folder$"):
        make_work_dir(str(tmp_path / "file"))
    with pytest.raises(WorkDirError, match=r"cannot create the folder \(Not a directory\)$"):
        make_work_dir(str(tmp_path / "file" / "sub"))
