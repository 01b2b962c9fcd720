"""The one exception type users see: its message is a complete, one-line explanation."""


class VisrewardError(Exception):
    """A problem with the user's input or setup; the CLI prints it without a traceback."""
