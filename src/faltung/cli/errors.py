class UsageError(ValueError):
    """A command-line request that cannot be carried out as given."""
