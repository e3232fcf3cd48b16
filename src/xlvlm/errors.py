"""User-facing errors.

Every problem a user can fix (a missing file, a malformed record, an unknown model, a layer
out of range) raises :class:`XlvlmError` with a one-line message that names the file or field
and says what to do. The CLI prints that line and exits with status 2; anything else is a bug
and keeps its traceback.
"""

import errno


class XlvlmError(Exception):
    """A problem with the user's input, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


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
