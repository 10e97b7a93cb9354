"""Error types. The CLI catches `TrajcacheError` only, prints its one-line message and exits 2.

Every message names the thing, the value and the fix. Anything that is not a `TrajcacheError`
is a bug and keeps its traceback.
"""


class TrajcacheError(Exception):
    """Root of every user-facing error."""


class ConfigError(TrajcacheError, ValueError):
    """A configuration value (flag, preset, suite file) is invalid."""


class DataError(TrajcacheError, ValueError):
    """A dataset file or row is malformed; the message names file, row and field."""


class ModelError(TrajcacheError):
    """A model could not be loaded or lacks what a diffusion sampler needs (mask token...)."""


class StoreNotFoundError(TrajcacheError, FileNotFoundError):
    """No trajcache run at the given path."""


class StoreError(TrajcacheError):
    """A run store is incomplete, corrupt or of an unsupported schema."""


class FingerprintMismatchError(StoreError):
    """A run was recorded from other inputs (model, tokenizer, sampler, items, schema)."""


class UnknownMetricError(TrajcacheError, LookupError):
    """A metric name is not registered."""


class MissingInputError(TrajcacheError):
    """A metric needs a split, role, field or reference that the run does not provide."""


class ResultsError(TrajcacheError):
    """A results file is malformed, or would be overwritten without --overwrite."""
