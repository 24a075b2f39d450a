"""Two processes compute what one computes: the tests of both trees' test_distributed.py, written once (each tree
collects them with `import *`; the cases run as subprocesses: tests/alignment/ranks_cases.py). FRAMEWORK is the
tree installed in the venv the tests run in."""
import pytest

from alignment.ranks_cases import e2e_sample, run_case
from gpt2_ft import TrainEngine
from testpaths import MIRROR

FRAMEWORK = TrainEngine.framework
pytestmark = pytest.mark.two_processes


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    return e2e_sample(tmp_path_factory.mktemp("e2e"), MIRROR)


@pytest.fixture(scope="module")
def trained(e2e, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    return out, run_case("train", FRAMEWORK, e2e[0], e2e[1], out)


def test_two_ranks_of_batch_4_train_as_one_process_of_batch_8(trained):
    _, result = trained
    assert result["steps"] == [30, 30] and result["same_names"]
    assert result["loss_abs"] <= 1e-5 and result["valid_loss_abs"] <= 1e-5
    assert result["lora_rel"] <= 1e-5


def test_rank_0_alone_writes_the_log_and_states_the_global_batch(trained):
    _, result = trained
    assert result["start_events"] == 1 and result["end_lines"] == 1 and result["printed_end"] == 1
    assert result["processes_line"] and result["global_batch"] == 8


@pytest.fixture(scope="module")
def decoded(trained, e2e, tmp_path_factory):
    """The 2-rank adapter decoded by 1 and by 2 processes."""
    out, _ = trained
    return run_case("beam", FRAMEWORK, out / "two" / "model.30", e2e[2], tmp_path_factory.mktemp("beam"))


def test_beam_search_on_two_ranks_writes_the_one_process_file_byte_for_byte(decoded):
    assert decoded["identical"] and decoded["lines"] >= 20


def test_killing_one_rank_ends_every_rank_and_resume_continues_the_same_run(e2e, tmp_path):
    result = run_case("kill", FRAMEWORK, e2e[0], e2e[1], tmp_path)
    assert result["launcher_exit"] != 0 and result["seconds_to_exit"] < 60 and result["ranks_left"] == []
    assert 0 < result["killed_after_steps"] < 60 and result["state"]
    assert result["steps"] == [60, 60]
    assert result["losses_identical"] and result["valid_identical"] and result["adapters_identical"]


def test_a_non_finite_loss_stops_every_rank_with_the_same_error(e2e, tmp_path):
    # (every rank sees the summed loss; a launcher may end the other rank before it prints: mpirun does)
    result = run_case("diverge", FRAMEWORK, e2e[0], e2e[1], tmp_path)
    assert result["exit"] == 1 and 1 <= len(result["errors"]) <= 2 and len(set(result["errors"])) == 1
    assert result["diverged_events"] == 1
