"""Bad input and faults for the Jittor tree's gpt2_ft.py and gpt2_beam.py (cases: tests/alignment/fault_cases.py)."""
from alignment.fault_cases import *  # noqa: F401,F403  (the shared cases, collected here for this tree)
from alignment.fault_cases import check_killed_runs_recover_exactly


def test_runs_killed_at_random_moments_resume_to_the_unbroken_result(data, tmp_path):
    check_killed_runs_recover_exactly("jittor", data, tmp_path)
