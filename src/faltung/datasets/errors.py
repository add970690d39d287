"""The one error type the data pipeline raises: it names the file, the problem and the fix."""


class DatasetError(ValueError):
    """A data file is missing, corrupt, truncated or not what it claims to be."""


# What a --data path must be, for the errors that find it is not.
NOT_DATA = "not an image folder, a .csv or .npz file, or a folder of IDX files"
