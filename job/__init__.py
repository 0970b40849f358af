"""sector-rotation: the monthly machine-learning sector-rotation batch job."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sector-rotation")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
