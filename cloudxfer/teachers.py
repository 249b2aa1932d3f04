"""Frozen teachers' outputs computed once per run (and reused across runs), looked up by tile id.

F1 and F2 train against frozen teachers on un-augmented tiles, so a teacher's logits for a tile
never change during a run: computing them once at fit start (batched, ``inference_mode``)
removes every teacher forward pass from the training step. The logits are saved keyed by
everything that determines them (each teacher checkpoint's SHA-256, and the datamodule's
``sample_key``: source files, tiling, scaling, standardisation, cloud settings and seed, tile
ids), so runs that share a teacher reuse them and a stale file is never read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cloudxfer.runtime import images_to
from datamodules.runfiles import atomic_open

__all__ = ["TeacherLogits", "compute_teacher_logits", "file_sha256", "load_or_compute"]

INFERENCE_BATCH = 256
"""Batch size of the one-off teacher pass (eval-mode networks: results do not depend on it)."""
FORMAT = 1


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TeacherLogits:
    """Teachers' logits over a fixed set of tiles, looked up by tile id.

    Args:
        ids: Tile ids in row order.
        logits: Teacher name -> float32 (N, M) logits on the CPU.

    """

    def __init__(self, ids: Sequence[str], logits: Mapping[str, Tensor]) -> None:
        self.ids = list(ids)
        self.row = {tile_id: i for i, tile_id in enumerate(self.ids)}
        self.logits = {name: value.float().cpu() for name, value in logits.items()}

    @classmethod
    def concat(cls, parts: Sequence[TeacherLogits]) -> TeacherLogits | None:
        """One lookup over the tiles of several parts (None when there are none)."""
        if not parts:
            return None
        ids = [tile_id for part in parts for tile_id in part.ids]
        names = parts[0].logits.keys()
        return cls(ids, {name: torch.cat([part.logits[name] for part in parts]) for name in names})

    def lookup(self, ids: Sequence[str], device: torch.device | str) -> dict[str, Tensor]:
        """Each teacher's logits for these tile ids, on ``device``.

        Raises:
            KeyError: A tile the teachers were not run on (naming it).

        """
        try:
            index = torch.tensor([self.row[tile_id] for tile_id in ids], dtype=torch.long)
        except KeyError as err:
            raise KeyError(f"no cached teacher logits for tile {err.args[0]!r}") from None
        return {
            name: value.index_select(0, index).to(device, non_blocking=True)
            for name, value in self.logits.items()
        }


@torch.inference_mode()
def compute_teacher_logits(
    teachers: Mapping[str, nn.Module],
    dataset: Dataset[dict[str, Any]],
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    batch_size: int = INFERENCE_BATCH,
) -> TeacherLogits:
    """Run every (eval-mode) teacher once over ``dataset``, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    ids: list[str] = []
    parts: dict[str, list[Tensor]] = {name: [] for name in teachers}
    for batch in loader:
        inputs = images_to(
            {k: v for k, v in batch.items() if k.startswith("image_")}, device, memory
        )
        ids.extend(batch["id"])
        for name, teacher in teachers.items():
            parts[name].append(teacher(inputs).float().cpu())
    return TeacherLogits(ids, {name: torch.cat(chunks) for name, chunks in parts.items()})


def _load(path: Path, key: str) -> TeacherLogits | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT or meta.get("key") != key:
                return None
            ids = [str(i) for i in data["ids"]]
            logits = {name: torch.from_numpy(data[f"logits_{name}"]) for name in meta["names"]}
    except Exception:  # noqa: BLE001 - a damaged cache of any kind is recomputed, never fatal
        return None
    if any(value.ndim != 2 or value.shape[0] != len(ids) for value in logits.values()):
        return None
    return TeacherLogits(ids, logits)


def _save(path: Path, key: str, result: TeacherLogits) -> None:
    meta = json.dumps({"format": FORMAT, "key": key, "names": sorted(result.logits)})
    arrays: dict[str, Any] = {
        f"logits_{name}": value.numpy() for name, value in result.logits.items()
    }
    arrays.update(meta=np.asarray(meta), ids=np.asarray(result.ids))
    with atomic_open(path, binary=True) as handle:
        np.savez(handle, **arrays)


def load_or_compute(
    cache_dir: Path | None,
    teacher_files: Mapping[str, str | Path],
    sample_key: str,
    compute: Any,
) -> TeacherLogits:
    """Return cached logits for these teachers and samples, computing (and saving) if needed.

    Args:
        cache_dir: Folder of cached logits; None computes without saving.
        teacher_files: Teacher name -> checkpoint path (hashed into the key).
        sample_key: The datamodule's hash of the samples the teachers see.
        compute: Zero-argument callable returning :class:`TeacherLogits`.

    Returns:
        The logits; a missing, unreadable or mismatching cache file is recomputed.

    """
    payload = {
        "teachers": {name: file_sha256(path) for name, path in sorted(teacher_files.items())},
        "samples": sample_key,
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    path = None if cache_dir is None else cache_dir / f"{key[:24]}.npz"
    if path is not None and path.is_file():
        cached = _load(path, key)
        if cached is not None:
            return cached
    result: TeacherLogits = compute()
    if path is not None:
        try:
            _save(path, key, result)
        except OSError:
            pass  # an unwritable cache only costs the recomputation next time
    return result
