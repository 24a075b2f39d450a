"""Bit-reproducible PyTorch runs on CPU (cases: tests/alignment/determinism_cases.py)."""
import pytest

from alignment.determinism_cases import COMMANDS, check_same_command_same_numbers, repeating_data  # noqa: F401


@pytest.mark.parametrize("command", COMMANDS)
def test_the_same_command_twice_gives_identical_logs_and_checkpoints(repeating_data, tmp_path, command):  # noqa: F811
    check_same_command_same_numbers("pytorch", repeating_data, tmp_path, command)
