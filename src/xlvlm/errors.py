"""User-facing errors.

Every problem a user can fix (a missing file, a malformed record, an unknown model, a layer
out of range) raises :class:`XlvlmError` with a one-line message that names the file or field
and says what to do. The CLI prints that line and exits with status 2; anything else is a bug
and keeps its traceback.
"""

import errno
from contextlib import contextmanager
from contextvars import ContextVar

# True while the command line runs a command: errors then name its options (--out), not the
# Python keywords (out=) of the function the command called.
_COMMAND_LINE = ContextVar("xlvlm_command_line", default=False)


class XlvlmError(Exception):
    """A problem with the user's input, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@contextmanager
def command_line_words():
    """Inside this block, :func:`argument` and :func:`setting` speak the command line's words."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def argument(name: str) -> str:
    """The argument ``name`` (a Python keyword) as the caller wrote it: ``--name-in-dashes``
    under the command line, ``name`` from Python."""
    return "--" + name.replace("_", "-") if _COMMAND_LINE.get() else name


def setting(name: str, value) -> str:
    """An argument with its value as the caller would write it: ``--device cpu`` or ``device='cpu'``;
    ``value=True`` gives the bare flag (``--overwrite``, ``overwrite=True``)."""
    if _COMMAND_LINE.get():
        return argument(name) if value is True else f"{argument(name)} {value}"
    return f"{name}={value!r}"


# Failures of the machine rather than of the program: a full disk, a read-only folder, a file
# where a folder is expected. The CLI reports them in one line (the file and what to do).
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere (--out)",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere (--out)",
    errno.EROFS: "read-only file system; write elsewhere (--out)",
    errno.EACCES: "permission denied; choose a path you may read or write",
    errno.EPERM: "operation not permitted; choose a path you may read or write",
    errno.ENOTDIR: "a file stands where a folder is expected; choose another path",
    errno.EEXIST: "already exists (a file where a folder is expected?); choose another path",
    errno.EISDIR: "is a folder where a file is expected; choose another path",
    errno.ENAMETOOLONG: "file name too long; choose a shorter path",
    errno.ELOOP: "too many levels of symbolic links; check the path",
}


def describe_os_error(exc: OSError, path=None) -> str | None:
    """One line for an OSError the user can fix, naming the file (``path`` when the error does
    not, as for a write to an open file), or None for any other."""
    advice = _ENVIRONMENT.get(exc.errno)
    if advice is None:
        return None
    where = exc.filename if exc.filename is not None else (path or "(a file being written)")
    return f"{where}: {advice}"
