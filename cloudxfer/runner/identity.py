"""What a run's id is made of: data by content, code by digest, never paths.

A run is reused whenever its id matches, so the id must change exactly when something that
decides the result changes: the data's *content* (a simulation record, or the files' names and
sizes and the small files' bytes), and the Python code that trains it (the import closure of
its method's class and data module within this package, plus the training command). Moving a
results folder or its data, or running from another clone of the same code, keeps every id.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "TRAINING_ENTRY", "code_digest", "data_fingerprint", "digest"]

ROOT = Path(__file__).resolve().parents[2]
"""Folder holding the ``cloudxfer`` and ``datamodules`` packages."""
PACKAGES = ("cloudxfer", "datamodules")
"""Packages whose modules count as the code of a run (third-party code is the environment)."""
TRAINING_ENTRY = ("cloudxfer.lightning_cli",)
"""Modules every fit runs through besides its method's and data module's classes."""
SMALL_FILE = 1 << 20
"""Files up to this size (labels, split lists, records) are hashed by content, larger ones
(rasters, images) by name and size."""
SIMULATION_RECORD = "simulation.json"


def digest(parts: Any) -> str:
    """Return a short stable hash of JSON-able ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def data_fingerprint(root: Path) -> str:
    """Identify a data folder (or file) by its content, never by its path or times.

    A simulated folder is what its simulation record says (generator, seed, sizes); any other
    folder is the sorted list of its files' relative names and sizes, with the bytes of the
    small ones (labels, split lists). Hidden files and folders are skipped. A missing path
    fingerprints as ``missing`` (the fit reports it).
    """
    if not root.exists():
        return "missing"
    if root.is_file():
        return _file_digest(root, root.name)
    record = root / SIMULATION_RECORD
    if record.is_file():
        return "sim-" + hashlib.sha256(record.read_bytes()).hexdigest()[:12]
    hasher = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(folder) / name
            hasher.update(_file_digest(path, path.relative_to(root).as_posix()).encode())
    return hasher.hexdigest()[:12]


def _file_digest(path: Path, name: str) -> str:
    size = path.stat().st_size
    if size <= SMALL_FILE:
        return f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
    return f"{name}\0{size}\n"


def _module_file(module: str) -> Path | None:
    """Return the source file of one of our modules (a package's ``__init__.py``), or None."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _imports(module: str) -> tuple[str, ...]:
    """Our modules that ``module`` imports (``from pkg import name`` resolves submodules)."""
    path = _module_file(module)
    if path is None:
        return ()
    found: list[str] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return tuple(name for name in found if _module_file(name) is not None)


def _resolve_class(class_path: str) -> str:
    """Return the module that defines ``class_path``'s class (through a package's re-export)."""
    module, _, name = class_path.rpartition(".")
    path = _module_file(module)
    if path is None or path.name != "__init__.py":
        return module
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            return _resolve_class(f"{node.module}.{name}") if node.module else module
    return module


def _closure(roots: Iterable[str]) -> list[str]:
    """Return every module of ours reachable from ``roots`` by imports.

    Package ``__init__`` files count, but their re-exports of sibling modules are not followed
    (they do not change what a class computes).
    """
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None or path.name == "__init__.py" and module not in roots:
            continue
        todo += _imports(module)
    return sorted(seen)


def code_digest(class_paths: Iterable[str]) -> str:
    """Digest of the code that trains a run: its classes' modules and all they import of ours.

    ``class_paths`` are the run's model and data classes (``cloudxfer.stages.TargetDistillation``);
    the training command (:data:`TRAINING_ENTRY`) is always included.
    """
    roots = [*(_resolve_class(c) for c in class_paths), *TRAINING_ENTRY]
    hasher = hashlib.sha256()
    for module in _closure(roots):
        path = _module_file(module)
        if path is not None:
            hasher.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()[:12]
