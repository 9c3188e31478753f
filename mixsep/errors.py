"""Errors a user can fix; their messages say how. The entry points print them without a traceback."""


class MixsepError(Exception):
    """Base of mixsep's user-facing errors."""


class ConfigError(MixsepError, ValueError):
    """A config value that cannot work (the message names the knob)."""


class DataNotFoundError(MixsepError, FileNotFoundError):
    """The datasets are missing or unreadable; the message says where we looked and how to fix it."""


class CheckpointError(MixsepError, ValueError):
    """The file is not a mixsep checkpoint (missing, truncated, or from something else)."""


class TrainingDivergedError(MixsepError):
    """The loss became NaN or infinite: the message names the step and what to change."""
