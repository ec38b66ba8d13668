"""The one exception type for user errors (bad config, bad data, missing model).

The CLI catches it and prints one line (what, where, how to fix) and exits with code 2;
everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is the full one-line message.

    >>> str(UserError("data file not found: x.jsonl", hint="check the path"))
    'data file not found: x.jsonl (check the path)'
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)
