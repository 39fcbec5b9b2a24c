"""User-facing errors: one line that names the file, row or key and the fix, exit code 2."""

import sys


class UserError(Exception):
    """Bad input from the user (config, data, plugin): reported as one line, never a traceback."""

    exit_code = 2


class DataError(UserError):
    """A data file cannot be used as it is; the message names the file and, where known, the row."""


class PluginError(UserError):
    """A plugin cannot be registered or found; the message names the plugin, its source and what exists."""


def exit_with(error: UserError) -> None:
    """Print the error as one line on stderr and exit with code 2."""
    message = " ".join(str(error).split())
    print(f"domaintune: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(error.exit_code)
