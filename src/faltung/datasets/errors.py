"""The one error type the data pipeline raises: it names the file, the problem and the fix."""


class DatasetError(ValueError):
    """A data file is missing, corrupt, truncated or not what it claims to be."""
