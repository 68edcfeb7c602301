"""sensit-harvester: resumable bulk back-fill of SENSIT Connect history into Parquet."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sensit-harvester")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
