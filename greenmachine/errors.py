"""User-facing errors.

Every problem a user can cause (bad option, missing file, malformed proxy) is raised as
:class:`GreenmachineError`; the CLI prints its message on one line and exits non-zero, without a traceback.
"""


class GreenmachineError(Exception):
    """An error whose message is meant for the user, on one line."""
