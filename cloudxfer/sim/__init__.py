"""Physically motivated simulator of Sentinel-1/2 target pairs and aerial RGB source images.

Names are imported on first use (reading a simulation record imports no generator).
"""

from cloudxfer.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {"generate_source": "generate", "generate_target": "generate", "main": "cli"},
)
