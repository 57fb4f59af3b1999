"""Owner-only files: the serving database (usage, key hashes, stored replies that may hold entity text) and the
registry's model copies (a tenant's trained weights) are readable by the user the server runs as, nobody else.

Modes are set when a file or directory is created, not left to the umask (which only ever removes bits, and is
022 on most machines: world-readable). Directories are 0700 and files 0600. The umask itself is not changed:
it is process-wide, and other threads create files too. A directory that exists already keeps its mode (it may
be one the operator chose, such as a shared volume); the database file and its -wal/-shm are goldmine's own, so
an existing world-readable one is made private on open.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a directory, created 0700 if missing (its missing parents get the usual modes)."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            return path  # made meanwhile by another process, through this same function
        os.chmod(path, DIR_MODE)  # mkdir's mode passed through the umask: make it exact
    return path


def private_file(path: Path) -> Path:
    """`path` as a file: created empty with mode 0600 if missing, else its mode set to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def private_tree(root: Path) -> None:
    """Make every directory under `root` (itself included) 0700 and every file 0600."""
    os.chmod(root, DIR_MODE)
    for directory, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(directory, name), DIR_MODE)
        for name in files:
            os.chmod(os.path.join(directory, name), FILE_MODE)
