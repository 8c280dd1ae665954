"""QFM-IQM reproduction: semantic-noise-robust no-reference image quality assessment."""

__version__ = "0.1.0"
