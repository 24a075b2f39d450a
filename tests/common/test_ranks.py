"""Which process is which, and what each computes (lora_nlg.util.ranks), and how the pipelines launch several."""
import importlib.util
import pathlib

import numpy as np
import pytest

from lora_nlg.data.batching import TrainBatches
from lora_nlg.pipeline import frameworks
from lora_nlg.util.ranks import LaunchError, Ranks, batch_rows, block, device_name, from_environment

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("pipeline", ROOT / "scripts" / "pipeline.py")
pipeline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pipeline)


def test_the_environment_of_each_launcher_names_the_rank():
    assert from_environment({}) == Ranks()
    assert from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Ranks(1, 2, 1, "torchrun")
    mpi = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0"}
    assert from_environment(mpi) == Ranks(0, 4, 0, "mpirun")
    assert from_environment({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, local_rank_flag=0).size == 2


@pytest.mark.parametrize("environ, flag, message", [
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, None, "not a valid place"),
    ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, None, "expected integers"),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 0, "disagrees"),
    ({}, 1, "without WORLD_SIZE"),
])
def test_an_inconsistent_launch_is_a_one_line_error(environ, flag, message):
    with pytest.raises(LaunchError, match=message):
        from_environment(environ, local_rank_flag=flag)


def test_blocks_cover_every_item_once_in_order():
    for n in (0, 1, 5, 28):
        for size in (1, 2, 3):
            parts = [block(n, Ranks(rank, size)) for rank in range(size)]
            assert [i for part in parts for i in part] == list(range(n))


def test_the_ranks_rows_are_the_one_process_batch():
    examples = [([1, 2, 3], [4, 5]), ([6] * 9, [7]), ([8, 9], [10, 11, 12]), ([13], [14, 15])] * 3
    batch = next(iter(TrainBatches(examples, 8, 16, 110).epoch(1, 0)))
    parts = [batch_rows(batch, Ranks(rank, 2)) for rank in range(2)]
    for name in ("input", "target", "mask", "lengths", "ids"):
        assert np.array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(batch, name))
    assert sum(p.n_real_tokens for p in parts) == batch.n_real_tokens
    assert batch_rows(batch, Ranks()) is batch


def test_each_rank_takes_its_own_gpu():
    assert device_name("auto", Ranks(1, 2, 1), has_cuda=True) == "cuda:1"
    assert device_name("cuda", Ranks(1, 2, 1), has_cuda=True) == "cuda:1"
    assert device_name("auto", Ranks(1, 2, 1), has_cuda=False) == "cpu"
    assert device_name("cuda:3", Ranks(), has_cuda=True) == "cuda:3"
    with pytest.raises(LaunchError, match="cuda:LOCAL_RANK"):
        device_name("cuda:0", Ranks(0, 2, 0), has_cuda=True)


def test_launch_commands_of_each_framework(monkeypatch):
    monkeypatch.setattr(frameworks, "framework_python", lambda framework: f"/venv-{framework}/python")
    assert frameworks.launch_command("pytorch", "ft.py", 1, ["-x"]) == ["/venv-pytorch/python", "ft.py", "-x"]
    assert frameworks.launch_command("pytorch", "ft.py", 2) == [
        "/venv-pytorch/python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "ft.py"]
    monkeypatch.setattr(frameworks.shutil, "which", lambda name: "/usr/bin/mpirun")
    command = frameworks.launch_command("jittor", "ft.py", 2)
    assert command[0] == "/usr/bin/mpirun" and command[-4:] == ["-np", "2", "/venv-jittor/python", "ft.py"][-4:]
    monkeypatch.setattr(frameworks.shutil, "which", lambda name: None)
    with pytest.raises(frameworks.NLGError, match="mpirun, which is not installed"):
        frameworks.launch_command("jittor", "ft.py", 2)


def test_pipeline_nproc_keeps_the_global_batch_and_launches_every_training_and_beam(tmp_path):
    args = pipeline.parse_args(["--dataset", "e2e", "--preset", "cpu", "--nproc", "2", "--out", str(tmp_path / "r"),
                                "--data_root", str(tmp_path / "d"), "--img_dir", str(tmp_path / "i")])
    stages = {stage.name: stage for stage in pipeline.plan(args).stages}
    for name in ("train (pytorch)", "beam (pytorch)"):
        assert "torch.distributed.run" in stages[name].steps[0].argv
    for name in ("pretrain base (jittor)", "train (jittor)", "beam (jittor)"):
        assert any(str(item).endswith("mpirun") for item in stages[name].steps[0].argv)
    train = [str(item) for item in stages["train (pytorch)"].steps[0].argv]
    assert train[train.index("--train_batch_size") + 1] == "4"  # the preset's 8 rows, 4 in each process
    with pytest.raises(SystemExit):
        pipeline.parse_args(["--dataset", "e2e", "--nproc", "0"])
    with pytest.raises(frameworks.NLGError, match="does not split"):
        pipeline.plan(pipeline.parse_args(["--dataset", "e2e", "--preset", "cpu", "--nproc", "3",
                                           "--out", str(tmp_path / "r3")]))
