"""cloudxfer: scene classification in cloud-prone regions (optical + SAR knowledge transfer)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cloudxfer")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"
