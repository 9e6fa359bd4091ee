"""Can an output file be written? Asked before a long run, so a typo fails at once.

Rules this module keeps:
- One question, one answer: ``check_output_path(path)`` is None when ``path`` can be written,
  else a one-line reason starting ``cannot write PATH: `` that a command line prints as it is.
- "Can be written" means an existing regular file this process may write (``os.access``), or
  a new file in an existing directory: for a new file the answer comes from creating it
  (mode ``"x"``, so an existing file is never truncated) and removing it at once, because
  ``os.access`` alone cannot see a read-only mount, a full quota or an ACL.
- No other side effect: nothing is left behind, nothing existing is opened for writing.
- Pure standard library, no imports from the rest of gic5 (usable by any subcommand).
"""

from __future__ import annotations

import errno
import os

__all__ = ["check_output_path"]


def _reason(exc: OSError) -> str:
    # The errno's text, in the lower case of the rest of the message ("permission denied").
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def check_output_path(path: str) -> str | None:
    """None when ``path`` can be written, else one line saying why not.

    >>> check_output_path("/nonexistent-gic5-dir/out.json")
    'cannot write /nonexistent-gic5-dir/out.json: directory /nonexistent-gic5-dir does not exist'
    """
    prefix = f"cannot write {path}: "
    if not path:
        return "cannot write '': the path is empty"
    if os.path.isdir(path):
        return prefix + "is a directory"
    if os.path.lexists(path):
        if not os.path.exists(path):  # a symbolic link to nothing
            return prefix + "is a dangling symbolic link"
        if not os.path.isfile(path):  # a FIFO or a device: not a result file
            return prefix + "is not a regular file"
        if not os.access(path, os.W_OK):
            return prefix + "permission denied"
        return None
    directory = os.path.dirname(path) or "."
    if not os.path.exists(directory):
        return prefix + f"directory {directory} does not exist"
    if not os.path.isdir(directory):
        return prefix + f"{directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return prefix + "permission denied"
    try:
        with open(path, "x"):
            pass
    except FileExistsError:
        # Created by someone else since the lexists above: judge it as an existing file.
        return None if os.access(path, os.W_OK) else prefix + "permission denied"
    except OSError as exc:
        return prefix + _reason(exc)
    try:
        os.remove(path)
    except OSError as exc:  # created but not removable: say so rather than leave it silently
        return prefix + f"could not remove the probe file ({_reason(exc)})"
    return None
