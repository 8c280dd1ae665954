"""The package's version, written once (pyproject.toml reads it; ``qfm_iqm.__version__`` re-exports it), on the
ground floor so that any module may name it."""

__version__ = "0.1.0"
