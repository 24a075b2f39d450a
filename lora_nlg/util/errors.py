"""One user-facing error type, and the CLI wrapper that turns it into a one-line message.

Bad input (a missing file, a malformed line, a checkpoint that does not fit) must reach the user as
`error: <file>: <problem>` and exit code 2, never as a traceback from deep inside.
"""
import sys


class NLGError(Exception):
    """An error the user can fix; its message names the file (and line) and the problem."""


def run_cli(main, argv=None):
    """Call `main(argv)`; print an NLGError as one line on stderr and exit 2."""
    try:
        return main(argv)
    except NLGError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class CheckpointError(NLGError):
    """A checkpoint that cannot be read or does not fit the model; the message names file and problem."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
