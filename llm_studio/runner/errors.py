"""What the runner refuses."""


class RunnerError(Exception):
    """Anything the runner refuses; the message is meant to be shown to the user as is."""
