"""The one error type the CLI turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input or an environment problem the user can fix: printed without a traceback, exit 2."""

    exit_code = 2
