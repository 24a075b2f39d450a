"""A run's output folder, made and locked before any work starts: no run loses work or mixes its files with another's.

Training and decoding take an exclusive `flock` on `<work_dir>/.lock` for the whole run: a second run on
the same folder stops at once with one line naming the first. The kernel drops the lock when its holder
dies (kill -9 included), so a killed run's folder is free again; its pid, left in the lock file, is
reported as taken over. Leftovers of writes the killed run had under way (`*.partial`, see
lora_nlg.util.files.atomic_open) are removed then, as nothing else can be writing there.
"""
import contextlib
import fcntl
import glob
import os
import socket
import sys

from lora_nlg.util.errors import NLGError

LOCK_FILE = ".lock"


class WorkDirError(NLGError):
    """The output folder cannot be used: not a folder, not writable, or in use by another run."""


def make_work_dir(path, flag="--work_dir"):
    """Create `path` (and its parents); a file in the way or a missing permission is a one-line error."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkDirError(f"{flag} {path}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise WorkDirError(f"{flag} {path}: cannot create the folder ({err.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise WorkDirError(f"{flag} {path}: the folder is not writable")


def remove_partial_files(path, echo=print):
    """Delete the `*.partial` files a killed write left in `path`; returns their names."""
    names = sorted(glob.glob(os.path.join(glob.escape(path), "*.partial")))
    for name in names:
        os.remove(name)
    if names:
        echo(f"note: removed {len(names)} partial file(s) of an interrupted write in {path}")
    return names


@contextlib.contextmanager
def locked_work_dir(path, flag="--work_dir", echo=print):
    """Make `path`, hold its lock for the block (WorkDirError if another live run holds it), clean leftovers."""
    make_work_dir(path, flag)
    lock_path = os.path.join(path, LOCK_FILE)
    with open(lock_path, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise WorkDirError(f"{flag} {path}: in use by a running job ({holder}); wait for it to end or "
                               f"choose another folder") from None
        lock.seek(0)
        previous = lock.read().strip()
        if previous:
            echo(f"note: {lock_path}: the run that held it ({previous}) is gone; taking it over")
        remove_partial_files(path, echo)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv[:1])}\n")
        lock.flush()
        try:
            yield path
        finally:
            lock.seek(0)
            lock.truncate()  # a clean end leaves an empty lock file: nothing to report next time
