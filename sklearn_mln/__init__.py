"""Meta-Loss Networks: learned loss functions for small-data classification."""

__version__ = "0.1.0"
