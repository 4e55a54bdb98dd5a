"""``python -m prunezoo`` = the ``prunezoo`` command."""

from prunezoo.cli import app

if __name__ == "__main__":
    app()
