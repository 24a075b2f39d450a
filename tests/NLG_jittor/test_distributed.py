"""Two Jittor processes (mpirun, Jittor's MPI) compute what one computes (shared: tests/alignment/ranks_tests.py)."""
import os

from alignment.ranks_cases import run_case
from alignment.ranks_tests import *  # noqa: F401,F403  (the shared tests and fixtures, collected here for this tree)


def test_a_jittor_adapter_trained_on_two_ranks_decodes_identically_in_pytorch(trained, decoded, e2e, tmp_path):
    out, _ = trained
    torch_file = run_case("beam", "pytorch", out / "two" / "model.30", e2e[2], tmp_path, 1)["prediction"]
    assert open(torch_file, "rb").read() == open(decoded["prediction"], "rb").read()


def test_a_pytorch_adapter_trained_on_two_ranks_decodes_identically_in_jittor(e2e, tmp_path):
    run_case("train", "pytorch", e2e[0], e2e[1], tmp_path / "train")
    files = [run_case("beam", framework, tmp_path / "train" / "two" / "model.30", e2e[2], tmp_path / framework,
                      nproc)["prediction"] for framework, nproc in (("pytorch", 2), ("jittor", 1))]
    assert open(files[0], "rb").read() == open(files[1], "rb").read()


def test_this_process_leaves_use_mpi_to_its_children():
    """jittor_env decided use_mpi=0 here (no mpirun); a rank that mpirun starts from here must decide for itself."""
    assert "use_mpi" not in os.environ
