"""Packed on-disk stores: decoded tiles as memory-mapped ``.npy`` arrays + a JSON manifest.

Decoding thousands of small GeoTIFFs at the start of every stage is dominated by per-file open
cost; a packed array is read at memory speed, shared between processes and DataLoader workers
through the page cache, and costs nothing to open. A store is built once per content key (a
hash of the source files' paths, sizes and mtimes plus every setting that shapes the arrays),
written atomically (a temporary folder renamed into place), and verified on every open (array
shapes, file sizes and a CRC32 of every array): a corrupt, truncated or stale store is rebuilt,
never used.

Why plain ``.npy`` and not zarr: the arrays are small, fixed-shape and read by random row, which
``numpy.load(mmap_mode="r")`` serves with no extra dependency and no chunk decoding; zarr's
chunking and compression would only add a decode step per read.

Large stores stream (:func:`open_or_build_streaming`): their arrays are memory-mapped ``.npy``
files filled chunk by chunk in a partial folder, so memory stays bounded by a chunk whatever
the data set's size, and a build that is interrupted resumes from its last finished chunk
(``progress.json``); a lock keeps two processes from building one store at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import data_error
from datamodules.faults import kill_point

__all__ = [
    "STORE_DIR_ENV",
    "STORE_FORMAT",
    "PackedStore",
    "StoreInvalid",
    "StoreWriter",
    "content_key",
    "default_store_dir",
    "file_fingerprint",
    "open_or_build",
    "open_or_build_streaming",
    "open_or_warn",
    "open_or_warn_streaming",
]

STORE_FORMAT = 1
"""Bumped whenever the layout of a store changes; part of every key."""
STORE_DIR_ENV = "CLOUDXFER_STORE_DIR"
"""Environment variable overriding the default store folder."""
MANIFEST = "manifest.json"
CRC_CHUNK = 1 << 24
"""Bytes per CRC32 update (bounded memory for large memory-mapped arrays)."""


class StoreInvalid(Exception):
    """A store on disk cannot be used (missing, corrupt, truncated or from other inputs)."""


def default_store_dir() -> Path:
    """``$CLOUDXFER_STORE_DIR``, else ``$XDG_CACHE_HOME/cloudxfer/store`` (``~/.cache/...``)."""
    if os.environ.get(STORE_DIR_ENV):
        return Path(os.environ[STORE_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "cloudxfer" / "store"


def file_fingerprint(paths: Iterable[Path | str]) -> list[list[Any]]:
    """``[absolute path, size, mtime_ns]`` per file: what a content key hashes.

    Raises:
        DataError: A file vanished since it was listed.

    """
    rows: list[list[Any]] = []
    real_dirs: dict[str, str] = {}  # one realpath per folder, not per file
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        resolved = os.path.join(real_dirs[folder], name)
        try:
            stat = os.stat(resolved)
        except OSError as err:
            raise data_error(resolved, f"cannot stat file: {err}") from err
        rows.append([resolved, stat.st_size, stat.st_mtime_ns])
    return rows


def content_key(kind: str, settings: Mapping[str, Any], files: Iterable[Path | str]) -> str:
    """SHA-256 (hex) of a store's kind, its settings and its source files' fingerprints."""
    payload = {
        "format": STORE_FORMAT,
        "kind": kind,
        "settings": settings,
        "files": file_fingerprint(files),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _crc(array: np.ndarray) -> int:
    view = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    crc = 0
    for start in range(0, len(view), CRC_CHUNK):
        crc = zlib.crc32(view[start : start + CRC_CHUNK], crc)
    return crc


@dataclass
class PackedStore:
    """An opened, verified store: memory-mapped arrays and the manifest's metadata.

    Attributes:
        path: The store folder.
        key: Its content key.
        arrays: Name -> read-only memory-mapped array.
        meta: What the builder recorded beside the arrays (ids, tile positions, ...).

    """

    path: Path
    key: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: Path, key: str, verify: bool = True) -> PackedStore:
        """Open and verify a store folder.

        Raises:
            StoreInvalid: Missing, from another key, truncated, or failing its checksums.

        """
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise StoreInvalid(f"{path}: no {MANIFEST}")
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest["format"] != STORE_FORMAT or manifest["key"] != key:
                raise StoreInvalid(f"{path}: built from other inputs or another store format")
            arrays: dict[str, np.ndarray] = {}
            for name, spec in manifest["arrays"].items():
                file = path / f"{name}.npy"
                if not file.is_file() or file.stat().st_size != spec["bytes"]:
                    raise StoreInvalid(f"{file}: missing or truncated")
                array = np.load(file, mmap_mode="r", allow_pickle=False)
                if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
                    raise StoreInvalid(f"{file}: shape or dtype differs from the manifest")
                if verify and _crc(array) != spec["crc32"]:
                    raise StoreInvalid(f"{file}: checksum mismatch (corrupt)")
                arrays[name] = array
        except StoreInvalid:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise StoreInvalid(f"{path}: unreadable ({err})") from err
        return cls(path=path, key=key, arrays=arrays, meta=manifest.get("meta", {}))


Builder = Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]


def _write(tmp: Path, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    _write_manifest(tmp, key, {name: tmp / f"{name}.npy" for name in arrays}, meta)


def _write_manifest(
    folder: Path, key: str, files: Mapping[str, Path], meta: Mapping[str, Any]
) -> None:
    """Write the manifest of ``.npy`` files already in ``folder`` (CRC read chunk by chunk)."""
    specs = {}
    for name, file in files.items():
        array = np.load(file, mmap_mode="r", allow_pickle=False)
        specs[name] = {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "bytes": file.stat().st_size,
            "crc32": _crc(array),
        }
        del array
    manifest = {"format": STORE_FORMAT, "key": key, "arrays": specs, "meta": dict(meta)}
    (folder / MANIFEST).write_text(json.dumps(manifest) + "\n")


def open_or_build(store_dir: Path, name: str, key: str, build: Builder) -> PackedStore:
    """Open the store ``<store_dir>/<name>-<key[:20]>``, (re)building it when unusable.

    Args:
        store_dir: Folder holding stores (created if needed).
        name: Readable prefix of the store folder (the dataset kind).
        key: Content key (:func:`content_key`).
        build: Returns the arrays and the metadata to store; called only when needed.

    Returns:
        The opened, verified store.

    Raises:
        OSError: ``store_dir`` cannot be written.

    """
    final = store_dir / f"{name}-{key[:20]}"
    try:
        return PackedStore.open(final, key)
    except StoreInvalid as err:
        if final.exists():
            warnings.warn(f"packed store unusable, rebuilding it: {err}", stacklevel=2)
    store_dir.mkdir(parents=True, exist_ok=True)  # fail before the (costly) build
    if not os.access(store_dir, os.W_OK):
        raise PermissionError(f"{store_dir}: not writable")
    arrays, meta = build()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".tmp", dir=store_dir))
    try:
        _write(tmp, key, arrays, meta)
        try:
            _place(tmp, final, name, store_dir)  # an unusable one is moved aside, then dropped
        except OSError:
            # Another process renamed its (identical) store into place first: use that one.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackedStore.open(final, key)


def _place(folder: Path, final: Path, name: str, store_dir: Path) -> None:
    """Rename a finished store folder into place (an unusable old one moved aside first)."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".old", dir=store_dir))
        os.replace(final, trash / "store")
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(folder, final)


ArraySpecs = Mapping[str, tuple[tuple[int, ...], str]]
"""Array name -> (shape, dtype name) of a streamed store."""
PROGRESS = "progress.json"


class StoreWriter:
    """The memory-mapped arrays of a store being built, and how far the build got.

    Attributes:
        arrays: Name -> writable memory-mapped array (fill rows, then :meth:`checkpoint`).
        state: What the builder recorded at its last checkpoint (``{}`` for a new build).

    """

    def __init__(self, folder: Path, specs: ArraySpecs, state: dict[str, Any]) -> None:
        self.folder = folder
        self.state = state
        self.arrays: dict[str, np.ndarray] = {}
        for array_name, (shape, dtype) in specs.items():
            file = folder / f"{array_name}.npy"
            if not file.is_file():
                array = np.lib.format.open_memmap(
                    file, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape)
                )
                array.flush()
                del array
        self._map()

    def _map(self) -> None:
        self.arrays = {
            file.stem: np.lib.format.open_memmap(file, mode="r+")
            for file in sorted(self.folder.glob("*.npy"))
        }

    def checkpoint(self, **state: Any) -> None:
        """Flush the arrays, then record ``state`` (a build resumes from the last record).

        The arrays are mapped afresh (take them from :attr:`arrays` again after a checkpoint):
        the pages written so far leave this process's memory for the page cache.
        """
        for array in self.arrays.values():
            array.flush()  # type: ignore[attr-defined]
        self.arrays.clear()
        self._map()
        self.state = {**self.state, **state}
        tmp = self.folder / f".{PROGRESS}.tmp"
        tmp.write_text(json.dumps(self.state) + "\n")
        os.replace(tmp, self.folder / PROGRESS)
        kill_point("store:checkpoint")

    def close(self) -> None:
        """Flush and release the arrays."""
        for array in self.arrays.values():
            array.flush()  # type: ignore[attr-defined]
        self.arrays.clear()


StreamingBuilder = Callable[[StoreWriter], dict[str, Any]]
"""Fills a :class:`StoreWriter` from ``writer.state`` on (resuming) and returns the metadata."""


def open_or_build_streaming(
    store_dir: Path, name: str, key: str, specs: ArraySpecs, build: StreamingBuilder
) -> PackedStore:
    """Open a store, or build it chunk by chunk into memory-mapped arrays, resuming if it can.

    A build interrupted (killed, out of memory, Ctrl-C) leaves ``.<name>-<key>.partial``
    behind with the state of its last checkpoint; the next call with the same key and array
    shapes resumes there. A build that fails on bad data removes it. One process builds a
    store at a time (a lock file); the others wait and open the result.

    Args:
        store_dir: Folder holding stores (created if needed).
        name: Readable prefix of the store folder.
        key: Content key (:func:`content_key`).
        specs: The arrays' shapes and dtypes.
        build: Fills the arrays (see :data:`StreamingBuilder`).

    Raises:
        OSError: ``store_dir`` cannot be written.

    """
    final = store_dir / f"{name}-{key[:20]}"
    try:
        return PackedStore.open(final, key)
    except StoreInvalid as err:
        if final.exists():
            warnings.warn(f"packed store unusable, rebuilding it: {err}", stacklevel=2)
    store_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(store_dir, os.W_OK):
        raise PermissionError(f"{store_dir}: not writable")
    partial = store_dir / f".{name}-{key[:20]}.partial"
    wanted = {k: [list(shape), dtype] for k, (shape, dtype) in specs.items()}
    lock_path = store_dir / f".{name}-{key[:20]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building it: wait for its result
        try:
            store = PackedStore.open(final, key)
            lock_path.unlink(missing_ok=True)
            return store
        except StoreInvalid:
            pass
        state: dict[str, Any] = {}
        try:
            state = json.loads((partial / PROGRESS).read_text())
        except (OSError, ValueError):
            pass
        if state.get("key") != key or state.get("specs") != wanted:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            state = {"key": key, "specs": wanted}
        writer = StoreWriter(partial, specs, state)
        try:
            meta = build(writer)
        except Exception:
            writer.close()  # bad data: the key changes once it is fixed, so nothing resumes
            shutil.rmtree(partial, ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            raise
        writer.close()
        (partial / PROGRESS).unlink(missing_ok=True)
        _write_manifest(partial, key, {n: partial / f"{n}.npy" for n in specs}, meta)
        _place(partial, final, name, store_dir)
        # the store is in place: a process still waiting on this lock finds it when it wakes
        lock_path.unlink(missing_ok=True)
    return PackedStore.open(final, key)


def open_or_warn_streaming(
    store_dir: Path, name: str, key: str, specs: ArraySpecs, build: StreamingBuilder
) -> PackedStore | None:
    """:func:`open_or_build_streaming`, or None with a warning when it cannot be written."""
    try:
        return open_or_build_streaming(store_dir, name, key, specs, build)
    except OSError as err:
        warnings.warn(
            f"{store_dir}: cannot write the packed {name} store ({err}); reading the inputs "
            "directly instead (set store_dir to a writable folder)",
            stacklevel=3,
        )
        return None


def open_or_warn(store_dir: Path, name: str, key: str, build: Builder) -> PackedStore | None:
    """:func:`open_or_build`, or None with a warning when ``store_dir`` cannot be written.

    Callers then read their inputs directly, as with ``store: false``.
    """
    try:
        return open_or_build(store_dir, name, key, build)
    except OSError as err:
        warnings.warn(
            f"{store_dir}: cannot write the packed {name} store ({err}); reading the inputs "
            "directly instead (set store_dir to a writable folder)",
            stacklevel=3,
        )
        return None
