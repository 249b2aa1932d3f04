"""A restricted unpickler for the SEN12MS toolbox's label and split pickles.

A pickle can name any importable callable and run it while loading. The toolbox's files hold
only dicts, lists, strings, numbers and numpy arrays, so this unpickler resolves exactly the
globals those need (numpy's array and scalar reconstructors, ``numpy.dtype``, ``ndarray`` and
the ``_codecs.encode`` that protocol-2 pickles use for bytes) and refuses every other one with
an error naming the file. Only ``cloudxfer prepare`` reads pickles; every later command reads
the data-set file it writes.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import data_error

__all__ = ["ALLOWED_GLOBALS", "load_pickle"]

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)
"""``(module, name)`` pairs a label or split pickle may name: numpy arrays and scalars."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; numpy 1.x module names map to numpy 2's."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a labels or split pickle never needs "
                "(only dicts, lists, strings, numbers and numpy arrays are read)"
            )
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def _check_values(value: Any, path: Path, depth: int = 0) -> None:
    """Refuse numpy object arrays (they could hide anything) anywhere in the loaded value."""
    if depth > 4:
        return
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise data_error(path, "pickle holds a numpy object array; expected numbers")
    if isinstance(value, dict):
        for item in list(value.values())[:1]:  # homogeneous files: the first entry tells
            _check_values(item, path, depth + 1)
    elif isinstance(value, list):
        for item in value[:1]:
            _check_values(item, path, depth + 1)


def load_pickle(path: str | Path) -> Any:
    """Load a pickle of dicts, lists, strings, numbers and numpy arrays, refusing anything else.

    Args:
        path: The pickle file.

    Returns:
        The loaded object.

    Raises:
        DataError: The file is missing, unreadable, truncated, or names a global outside
            :data:`ALLOWED_GLOBALS`; the message names the file.

    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise data_error(path, f"cannot read the pickle: {exc.strerror or exc}") from None
    try:
        value = _RestrictedUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # a damaged pickle fails in many ways: each is a bad file
        raise data_error(path, f"cannot read the pickle: {exc}") from None
    _check_values(value, path)
    return value
