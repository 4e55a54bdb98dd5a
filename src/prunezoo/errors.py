"""User-facing errors. Each names the offending field so the CLI can print it and exit 2."""


class ConfigError(ValueError):
    """Invalid user input; ``field`` is the dotted path of the offending setting.

    ``more``: further ``(field, message)`` problems found in the same input, reported together.
    Raised inside a pydantic validator, ``field`` is relative to the model being validated.
    """

    def __init__(self, field: str, message: str, more: list[tuple[str, str]] | None = None):
        self.field, self.message, self.more = field, message, list(more or [])
        super().__init__("\n".join(f"{f}: {m}" for f, m in [(field, message), *self.more]))

    def __reduce__(self):  # picklable across worker processes (args holds only the joined text)
        return type(self), (self.field, self.message, self.more)
