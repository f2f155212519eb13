"""hsflowd-py: a Host sFlow agent in Python."""

__version__ = "0.1.0"
