"""The one exception type for user errors: the CLI prints `error: <message>` and exits 2."""


class QetoolError(Exception):
    """A user error (bad file, bad value, impossible budget): one line, no traceback."""
