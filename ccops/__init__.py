"""ccops: the Content Creator maintenance guide, made executable."""

__version__ = "0.1.0"
