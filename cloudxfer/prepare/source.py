"""``cloudxfer prepare source``: check a source image folder as distributed, name its role.

Accepts NWPU-RESISC45 and AID as unpacked (and torchgeo's parent folder), skips ``__MACOSX``
and hidden files, refuses a root of one class, decodes every image once (grayscale and CMYK
JPEGs are converted to RGB, as training reads them) and says which role the folder plays:
the simulator's sets by their ``simulation.json``, real ones by their class names. A table
refuses a source folder of another role (``cloudxfer run --table``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from datamodules.errors import data_error

__all__ = ["add_arguments", "run", "source_role"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``prepare source``."""
    parser.add_argument("--root", type=Path, required=True, help="the source image folder")
    parser.add_argument(
        "--role",
        choices=("nwpu", "aid"),
        default=None,
        help="refuse the folder unless it plays this role (Tables I/III: nwpu; II/IV: aid)",
    )
    parser.add_argument("--workers", type=int, default=None, help="threads decoding images")


def source_role(root: Path) -> str | None:
    """Return a source folder's role: its simulation record's, else by its class names."""
    from cloudxfer.sim.record import simulation_record
    from datamodules.source_layout import class_folders, resolve_source_root, role_of_classes

    resolved = resolve_source_root(root)
    for folder in (root, resolved):
        record = simulation_record(folder)
        if record is not None and record.get("role"):
            return str(record["role"])
    return role_of_classes(class_folders(resolved))


def _skipped(root: Path) -> int:
    from datamodules.source_layout import is_skipped

    count = 0
    for folder, dirs, files in os.walk(root):
        hidden = [d for d in dirs if is_skipped(d)]
        for d in hidden:
            count += sum(len(f) for _, _, f in os.walk(Path(folder) / d))
        dirs[:] = [d for d in dirs if not is_skipped(d)]
        count += sum(1 for f in files if is_skipped(f))
    return count


def _mode(path: Path) -> str:
    """Decode one image fully as training does (to RGB); return its stored mode."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            image.convert("RGB").load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise data_error(path, f"unreadable image: {exc}") from None
    return mode


def run(args: argparse.Namespace) -> int:
    """Check a source folder and print its role, classes and images."""
    from concurrent.futures import ThreadPoolExecutor

    from cloudxfer.runtime import available_cores
    from datamodules.progress import Progress
    from datamodules.source_layout import ROLE_NAMES, class_folders, resolve_source_root
    from datamodules.source_scenes import list_images

    start = time.perf_counter()
    given: Path = args.root.resolve()
    root = resolve_source_root(given)
    classes = class_folders(root)
    role = source_role(given)
    if args.role is not None and role != args.role:
        raise data_error(
            root,
            f"source folder plays the {role or 'unknown'} role, not {args.role} "
            f"({ROLE_NAMES[args.role]}): its classes are {', '.join(classes[:5])}...",
        )
    images = list_images(root, classes)
    per_class = Counter(label for _, label in images)
    progress = Progress("decoding images", len(images))
    modes: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=args.workers or available_cores()) as pool:
        for mode in pool.map(_mode, (path for path, _ in images)):
            modes[mode] += 1
            progress.update()
    progress.close()
    where = f"{root}" + (f" (torchgeo's layout under {given})" if root != given else "")
    role_text = (
        f"{role} ({ROLE_NAMES[role]} by its class names or simulation record)"
        if role
        else "unknown (class names match neither NWPU-RESISC45 nor AID: no paper table "
        "takes it, `cloudxfer chain` and `run --methods` do)"
    )
    counts = sorted(per_class.values())
    print(f"source folder: {where}")
    print(f"role: {role_text}")
    print(f"classes: {len(classes)}; images: {len(images):,} ({counts[0]}-{counts[-1]} a class)")
    skipped = _skipped(given)
    if skipped:
        print(f"skipped {skipped:,} hidden or __MACOSX entries")
    converted = {m: n for m, n in modes.items() if m != "RGB"}
    if converted:
        text = ", ".join(f"{n:,} {m}" for m, n in sorted(converted.items()))
        print(f"decoded every image; converted to RGB as training reads them: {text}")
    else:
        print("decoded every image (all RGB)")
    print(f"checked in {time.perf_counter() - start:.0f} s; "
          f"next: --source-root {root}")  # fmt: skip
    return 0
