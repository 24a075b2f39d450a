"""gpt2_ft flags (defaults = the README's E2E command) and the framework-neutral resume state."""
import numpy as np
import pytest

from lora_nlg.checkpoints.tensor_files import save_safetensors
from lora_nlg.decode import beam_cli
from lora_nlg.train.cli import engine_settings, parse_args, resume_settings
from lora_nlg.train.state import LossScale, TrainState, check_settings, load_train_state, save_train_state, step_seed
from lora_nlg.util.errors import CheckpointError
from lora_nlg.util.flags import matmul_precision, reproducibility

REQUIRED = ["--train_data", "t.jsonl", "--valid_data", "v.jsonl", "--work_dir", "out"]


def test_defaults_are_the_readme_e2e_command():
    args = parse_args(REQUIRED)
    readme = {"train_batch_size": 8, "grad_acc": 1, "valid_batch_size": 4, "seq_len": 512, "model_card": "gpt2.md",
              "clip": 0.0, "lr": 0.0002, "weight_decay": 0.01, "correct_bias": True, "adam_beta2": 0.999,
              "scheduler": "linear", "warmup_step": 500, "max_epoch": 5, "save_interval": 1000, "lora_dim": 4,
              "lora_alpha": 32, "lora_dropout": 0.1, "label_smooth": 0.1, "random_seed": 110, "platform": "local"}
    assert {name: getattr(args, name) for name in readme} == readme
    assert (args.adam_beta1, args.adam_epsilon, args.lora_targets, args.max_step) == (0.9, 1e-6, "q,v", None)
    assert not (args.fixed_padding or args.resume or args.fp16 or args.bf16 or args.exact)


def test_tf32_on_cuda_unless_exact_and_float32_on_cpu():
    """The matmul precision both trees set and log (model.set_matmul_precision): a function of device and --exact."""
    assert matmul_precision("cuda", exact=False) == "tf32"
    assert matmul_precision("cuda", exact=True) == "float32 (exact)"
    assert matmul_precision("cpu", exact=False) == matmul_precision("cpu", exact=True) == "float32"
    assert engine_settings(parse_args(REQUIRED + ["--exact"])).exact is True
    assert "exact" not in resume_settings(parse_args(REQUIRED), max_step=1)  # numerics of a device, as --device
    beam = ["--data", "test.jsonl", "--random_seed", "1", "--model_card", "gpt2.tiny"]
    assert beam_cli.parse_args(beam + ["--exact"]).exact and not beam_cli.parse_args(beam).exact


def test_reproducibility_is_stated_per_device_and_deterministic_flag():
    assert reproducibility("cpu", deterministic=False) == reproducibility("cpu", deterministic=True) == \
        "bit-reproducible (CPU)"
    assert reproducibility("cuda", deterministic=True) == "deterministic algorithms (CUDA)"
    assert reproducibility("cuda", deterministic=False) == "not bit-reproducible (CUDA; --deterministic)"
    assert engine_settings(parse_args(REQUIRED + ["--deterministic"])).deterministic is True
    assert engine_settings(parse_args(REQUIRED)).deterministic is False


def test_flag_spellings():
    assert parse_args(REQUIRED + ["--adam_epislon", "1e-8"]).adam_epsilon == 1e-8  # the reference's spelling
    assert parse_args(REQUIRED + ["--adam_epsilon", "1e-7"]).adam_epsilon == 1e-7
    assert parse_args(REQUIRED + ["--correct_bias"]).correct_bias is True
    assert parse_args(REQUIRED + ["--no_correct_bias"]).correct_bias is False


@pytest.mark.parametrize("bad", [["--grad_acc", "0"], ["--seq_len", "2048"], ["--lora_dropout", "1"],
                                 ["--device", "gpu"], ["--fp16", "--bf16"], ["--platform", "philly"],
                                 ["--model_card", "gpt2.xl"], ["--max_step", "0"]])
def test_bad_flags_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(REQUIRED + bad)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_resume_settings_use_absolute_paths_and_name_every_difference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = resume_settings(parse_args(REQUIRED), max_step=100)
    assert settings["train_data"] == str(tmp_path / "t.jsonl") and settings["max_step"] == 100
    assert "log_interval" not in settings and "work_dir" not in settings and "device" not in settings
    check_settings(settings, dict(settings), "state")
    changed = resume_settings(parse_args(REQUIRED + ["--lr", "1e-3", "--lora_dim", "8"]), max_step=100)
    with pytest.raises(CheckpointError, match=r"state: cannot resume with different settings: "
                                              r"lora_dim 4 -> 8; lr 0.0002 -> 0.001"):
        check_settings(settings, changed, "state")
    with pytest.raises(CheckpointError, match=r"processes 1 -> 2"):  # each rank draws its own dropout masks
        check_settings(settings, resume_settings(parse_args(REQUIRED), max_step=100, processes=2), "state")


def test_state_round_trip(tmp_path):
    path = tmp_path / "train_state.safetensors"
    state = TrainState(settings={"lr": 0.1}, step=7, epoch=2, batch=3, n_evals=1, best_loss=1.5, best_step=4,
                       meter={"batches": 1, "loss_sum": 2.5}, loss_scale={"enabled": True, "scale": 8.0},
                       framework="pytorch")
    rng = np.random.default_rng(0)
    groups = {"param": {"h.0.attn.c_attn.lora_A": rng.normal(size=(8, 4)).astype(np.float32)},
              "optim": {"step": np.array([3], dtype=np.int64),
                        "exp_avg.h.0.attn.c_attn.lora_A": np.ones((8, 4), np.float32)},
              "grad": {}}
    save_train_state(path, state, groups)
    loaded, loaded_groups = load_train_state(path)
    assert loaded == state
    assert loaded_groups.keys() == groups.keys() and loaded_groups["grad"] == {}
    for group in ("param", "optim"):
        assert loaded_groups[group].keys() == groups[group].keys()
        for name, value in groups[group].items():
            assert loaded_groups[group][name].dtype == value.dtype
            np.testing.assert_array_equal(loaded_groups[group][name], value)


def test_bad_state_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no training state to resume"):
        load_train_state(tmp_path / "train_state.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors: unreadable training state"):
        load_train_state(tmp_path / "junk.safetensors")
    save_safetensors(tmp_path / "adapter.safetensors", {"w": np.zeros(2, np.float32)})
    with pytest.raises(CheckpointError, match="adapter.safetensors: not a training state"):
        load_train_state(tmp_path / "adapter.safetensors")


def test_step_seeds_differ_per_step_and_seed_and_are_stable():
    seeds = {step_seed(seed, step) for seed in (110, 111) for step in range(1, 200)}
    assert len(seeds) == 2 * 199
    assert all(0 <= s < 2 ** 31 for s in seeds)
    assert step_seed(110, 5) == int(np.random.SeedSequence([110, 5]).generate_state(1)[0]) >> 1
    # several processes: rank 0 draws one process's stream, the others their own
    assert step_seed(110, 5, rank=0) == step_seed(110, 5)
    assert len({step_seed(110, 5, rank) for rank in range(4)}) == 4


def test_loss_scale_halves_on_overflow_and_grows_after_clean_updates():
    scale = LossScale(enabled=True, scale=1024.0, growth_interval=3)
    for overflowed, expected in [(False, 1024), (False, 1024), (False, 2048), (True, 1024), (False, 1024),
                                 (False, 1024), (True, 512), (False, 512)]:
        scale.update(overflowed)
        assert scale.scale == expected
    off = LossScale(enabled=False, scale=1024.0)
    off.update(True)
    assert off.scale == 1.0
