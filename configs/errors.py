"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class TrimbertError(Exception):
    """Bad input or a missing resource; the message names the file, record or field."""
