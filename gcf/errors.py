"""One exception type for user-facing errors: the CLI prints its message as one line and exits 2."""


class GcfError(Exception):
    """An error the user can fix; the message names the file or value and what to do."""
