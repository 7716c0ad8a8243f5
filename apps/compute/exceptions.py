class JobConflict(Exception):
    """A worker call about a job that is not (or no longer) its to run."""
