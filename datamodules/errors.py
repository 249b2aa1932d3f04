"""The one exception type every datamodule raises for bad input on disk."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or inconsistent input data; the message names the file and the problem.

    Raised while scanning and validating (``setup``), before any training starts. It is a
    ``ValueError`` so callers that already catch those keep working.
    """


def data_error(path: str | Path, problem: str) -> DataError:
    """Build a :class:`DataError` whose message starts with the offending file.

    Args:
        path: The file or folder at fault.
        problem: What is wrong with it, phrased for a user.

    Returns:
        The exception (raise it yourself, so tracebacks point at the caller).

    """
    return DataError(f"{path}: {problem}")
