"""User-facing errors.

Every problem a user can fix (a missing file, a malformed record, an unknown model, a layer
out of range) raises :class:`XlvlmError` with a one-line message that names the file or field
and says what to do. The CLI prints that line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class XlvlmError(Exception):
    """A problem with the user's input, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
