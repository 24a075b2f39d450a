"""Before any test: what the test command needs from this machine (testpaths.setup_problem), or one line saying
what to install."""
import pytest

from testpaths import setup_problem


def pytest_sessionstart(session):
    problem = setup_problem()
    if problem:
        pytest.exit(f"tests cannot run: {problem}", returncode=3)
