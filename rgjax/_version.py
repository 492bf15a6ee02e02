"""The package version (one place; read by ``rgjax.__version__`` and the results files)."""

__version__ = "0.1.0"
