"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A problem with the user's input (spec, names, data on disk) rather than a bug.

    The message must name the offending key or file and say how to fix it.
    """
