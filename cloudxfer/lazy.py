"""Package names imported on first use (PEP 562), so light commands skip heavy modules.

``cloudxfer run --help`` reads a simulation record and ``cloudxfer map --help`` its options;
neither should import the simulator's or the mapper's torch and rasterio code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> the submodule (relative to ``package``) defining it.

    """

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    names = sorted(exports)
    return getattr_, lambda: list(names), names
