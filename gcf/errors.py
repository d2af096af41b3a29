"""User-facing messages: one exception type (the CLI prints it as one line and exits 2) and counted words."""


class GcfError(Exception):
    """An error the user can fix; the message names the file or value and what to do."""


def plural(n: int, word: str) -> str:
    """'1 run', '2 runs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"
