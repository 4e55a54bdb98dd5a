"""User-facing errors. Each names the offending field so the CLI can print it and exit 2."""


class ConfigError(ValueError):
    """Invalid user input; ``field`` is the dotted path of the offending setting."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
