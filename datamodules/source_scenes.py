"""Source domain: cloud-free optical scenes in torchvision ``ImageFolder`` layout.

``<root>/<class name>/<image>.{png,jpg,tif,...}``; class names are the folder names, sorted
(or the ``classes`` argument, which fixes their order and may leave folders out). The root may
be torchgeo's parent folder (``<root>/NWPU-RESISC45/<class>/``); hidden files and folders and
``__MACOSX`` are skipped, and a root of one class is refused (``datamodules.source_layout``).

We use torchvision's ImageFolder helpers (``find_classes``, ``make_dataset``,
``default_loader``, ``IMG_EXTENSIONS``) and its v2 transforms, but not the ``ImageFolder``
class itself: we need dict samples with an id, a seeded train/val split over one file list,
and a clear :class:`DataError` for empty class folders and unreadable images at setup.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.datasets.folder import (
    IMG_EXTENSIONS,
    default_loader,
    has_file_allowed_extension,
    make_dataset,
)
from torchvision.transforms import v2

from datamodules.clouds import CloudConfig, CloudPaster
from datamodules.errors import DataError, data_error
from datamodules.normalisation import NUM_CHANNELS
from datamodules.runfiles import write_json
from datamodules.sampling import EpochShuffle
from datamodules.source_layout import class_folders, is_skipped, resolve_source_root
from datamodules.splits import SplitRow, write_split_csv
from datamodules.store import PackedStore, content_key, default_store_dir, open_or_warn

SourceSubset = Literal["train", "val"]
SOURCE_SPLITS: tuple[str, ...] = ("train", "val")
PIXEL_SCALE = 255.0
"""8-bit images are scaled to [0, 1] by dividing by 255 before standardisation."""
DEFAULT_IMAGE_SIZE = 224
MAX_CHECK_THREADS = 8
Sample = dict[str, Any]


def is_image_file(relative: str | Path) -> bool:
    """Whether a path (relative to the root) is an image to read.

    It needs an image suffix and no hidden or ``__MACOSX`` part: macOS archives carry
    ``._<name>.jpg`` resource forks beside the images.
    """
    if not has_file_allowed_extension(str(relative), IMG_EXTENSIONS):
        return False
    return not any(is_skipped(part) for part in Path(relative).parts)


def list_images(root: Path, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    """List ``(image path, class index)`` for the given class folders, sorted.

    Hidden files and folders (``._x.jpg`` resource forks among them) are skipped.

    Raises:
        DataError: Missing class folder or a class folder holding no image.

    """
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            raise data_error(folder, f"class folder for {name!r} not found")
        found = make_dataset(
            str(root),
            {name: index},
            is_valid_file=lambda path: is_image_file(Path(path).relative_to(root)),
            allow_empty=True,
        )
        if not found:
            raise data_error(folder, f"class folder holds no image ({', '.join(IMG_EXTENSIONS)})")
        samples.extend((Path(path), target) for path, target in sorted(found))
    return samples


def load_image(path: Path) -> Image.Image:
    """Fully decode an image as RGB; raise :class:`DataError` naming it when that fails."""
    try:
        return default_loader(str(path))  # PIL open + convert("RGB"), which decodes it all
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise data_error(path, f"unreadable image: {exc}") from exc


def check_image(path: Path) -> None:
    """Fully decode an image; raise :class:`DataError` naming it when that fails."""
    load_image(path)


def _decode_threads() -> int:
    return max(1, min(MAX_CHECK_THREADS, os.cpu_count() or 1))


class StoredImages:
    """Resized uint8 images read from a packed store (memory-mapped), by file path.

    Args:
        store: The opened store.
        paths: The image files in the order they were keyed: the store's key covers the
            resolved files in this order, so row ``i`` holds ``paths[i]`` however the root
            was spelled.

    """

    def __init__(self, store: PackedStore, paths: Sequence[Path]) -> None:
        self.images = store.arrays["images"]
        self.row_of = {path: row for row, path in enumerate(paths)}

    def __call__(self, path: Path) -> torch.Tensor:
        """Return the stored (3, S, S) uint8 image of ``path`` as a torchvision image tensor."""
        return tv_tensors.Image(torch.from_numpy(np.array(self.images[self.row_of[path]])))


class SourceScenesDataset(Dataset[Sample]):
    """Images as ``{"image_opt": float32 (3, S, S), "label": int64 (), "id": str}``.

    With ``clouds``, also ``image_opt_cloudy`` (the same image with the tile's cloud pasted
    onto its [0, 1] pixels by ``datamodules.clouds``, standardised alike) and
    ``cloud_fraction`` float32 () (0.0 where the image stays clear): cloudy/clear pairs for
    pre-training a cloud-removal network on the cloud-free source domain.

    Args:
        samples: ``(path, class index)`` pairs.
        root: Dataset root (ids are paths relative to it).
        transform: Maps a PIL image (or a stored uint8 image tensor) to float32 (3, S, S);
            with ``clouds``, to [0, 1] pixels (``standardise`` follows the pasting).
        stored: Resized images from a packed store (None: decode the files).
        clouds: Pastes each image's cloud (deterministic per image id); None: no pairs.
        standardise: Standardisation applied after pasting (with ``clouds`` only).

    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        root: Path,
        transform: v2.Transform,
        stored: StoredImages | None = None,
        clouds: CloudPaster | None = None,
        standardise: v2.Transform | None = None,
    ) -> None:
        if (clouds is None) != (standardise is None):
            raise ValueError("clouds and standardise go together (pasting is on [0, 1] pixels)")
        self.samples = list(samples)
        self.root = root
        self.transform = transform
        self.stored = stored
        self.clouds = clouds
        self.standardise = standardise

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.samples[index]
        image = self.stored(path) if self.stored is not None else load_image(path)
        tile_id = path.relative_to(self.root).as_posix()
        sample: Sample = {
            "image_opt": self.transform(image),
            "label": torch.tensor(label, dtype=torch.int64),
            "id": tile_id,
        }
        if self.clouds is not None and self.standardise is not None:
            clear = sample["image_opt"].as_subclass(torch.Tensor)
            cloudy, fraction = self.clouds(clear.numpy(), tile_id)
            sample["image_opt"] = self.standardise(clear)
            sample["image_opt_cloudy"] = self.standardise(torch.from_numpy(cloudy))
            sample["cloud_fraction"] = torch.tensor(fraction, dtype=torch.float32)
        return sample


class SourceScenesDataModule(L.LightningDataModule):
    """Cloud-free labelled optical scenes (NWPU-RESISC45 / AID roles).

    Args:
        root: ImageFolder root.
        mean: Per-channel (R, G, B) mean of the [0, 1]-scaled images (required).
        std: Per-channel std (required, > 0).
        image_size: Images are resized to ``image_size`` x ``image_size``.
        val_fraction: Share of each class's images held out for validation.
        split_seed: Seed of the train/val split.
        classes: Class folder names in index order; None = every folder, sorted.
        augment: Random horizontal/vertical flips on the train split.
        clouds: Also serve each image with a cloud pasted by ``datamodules.clouds``
            (``image_opt_cloudy``, ``cloud_fraction``; the same cloud for an image in every
            epoch, seeded by its id and ``clouds.seed``); None: clear images only.
        check_images: Decode every image once in :meth:`setup` so unreadable files fail early
            (a packed store is built from decoded images, so it checks them too).
        store: Keep the decoded, resized images in a packed store built once per content key
            (``datamodules.store``) instead of decoding every file in every process.
        store_dir: Folder of packed stores; None: ``$CLOUDXFER_STORE_DIR`` or
            ``~/.cache/cloudxfer/store``.
        batch_size: Batch size.
        num_workers: DataLoader workers.
        pin_memory: DataLoader ``pin_memory``.

    """

    dataset_name = "source_scenes"

    def __init__(
        self,
        root: str | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        val_fraction: float = 0.2,
        split_seed: int | None = None,
        classes: list[str] | None = None,
        augment: bool = True,
        clouds: CloudConfig | None = None,
        check_images: bool = True,
        store: bool | None = None,
        store_dir: str | None = None,
        batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        # None: not given (the training command fills these from the profile); a datamodule
        # built in Python gets the usual defaults
        if root is None:
            raise ValueError(
                "the source data root is not set: give --data.init_args.root "
                "(or --profile.source_root)"
            )
        if mean is None or std is None:
            raise ValueError("mean and std are required (the source set's standardisation)")
        split_seed = 0 if split_seed is None else split_seed
        store = True if store is None else store
        batch_size = 32 if batch_size is None else batch_size
        num_workers = 0 if num_workers is None else num_workers
        pin_memory = bool(pin_memory)
        if len(mean) != NUM_CHANNELS or len(std) != NUM_CHANNELS or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0: {mean}, {std}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.root = resolve_source_root(root)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.augment = augment
        self.clouds = clouds
        self.check_images = check_images
        self.store = store
        self.store_dir = Path(store_dir) if store_dir is not None else default_store_dir()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        if classes is None:
            classes = class_folders(self.root)
        self.class_names: list[str] = list(classes)
        self.num_classes: int = len(self.class_names)
        self._rows: list[SplitRow] | None = None
        self._subsets: dict[str, list[tuple[Path, int]]] = {}
        self._stored: StoredImages | None = None

    @property
    def normalisation(self) -> dict[str, Any]:
        """JSON-serialisable scaling and standardisation of the source images."""
        extra = {} if self.clouds is None else {"clouds": asdict(self.clouds)}
        return {
            "dataset": self.dataset_name,
            "optical": {"pixel_divisor": PIXEL_SCALE, "image_size": self.image_size},
            "standardisation": {"opt_mean": list(self.mean), "opt_std": list(self.std)},
            **extra,
        }

    def prepare_data(self) -> None:
        """Nothing to download; scanning happens in :meth:`setup`."""

    def setup(self, stage: str | None = None) -> None:
        """List (and by default decode once) every image and draw the split; idempotent.

        Raises:
            DataError: Missing root/class folder, empty class folder, unreadable image.

        """
        if self._rows is not None:
            return
        if not self.root.is_dir():
            raise data_error(self.root, "dataset root not found")
        samples = list_images(self.root, self.class_names)
        if self.store:
            self._stored = self._open_store([path for path, _ in samples])
        if self.check_images and self._stored is None:
            with ThreadPoolExecutor(max_workers=_decode_threads()) as pool:
                list(pool.map(check_image, (path for path, _ in samples)))
        rng = np.random.default_rng(self.split_seed)
        split_of: dict[Path, str] = {}
        for index in range(self.num_classes):
            paths = [path for path, label in samples if label == index]
            n_val = int(round(self.val_fraction * len(paths)))
            for rank, position in enumerate(rng.permutation(len(paths))):
                split_of[paths[position]] = "val" if rank < n_val else "train"
        self._subsets = {
            name: [(p, label) for p, label in samples if split_of[p] == name]
            for name in SOURCE_SPLITS
        }
        rows = []
        for path, label in samples:
            rel = path.relative_to(self.root).as_posix()
            rows.append(SplitRow(id=rel, patch=rel, label=label, split=split_of[path]))
        self._rows = rows

    def _resize(self) -> v2.Transform:
        return v2.Compose(
            [v2.ToImage(), v2.Resize((self.image_size, self.image_size), antialias=True)]
        )

    def _open_store(self, paths: list[Path]) -> StoredImages | None:
        """Open (or build) the packed store of resized images; None when unwritable."""
        settings = {"image_size": self.image_size, "resize": "antialias-bilinear"}
        key = content_key("source_images", settings, paths)
        resize = self._resize()

        def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            with ThreadPoolExecutor(max_workers=_decode_threads()) as pool:
                images = list(pool.map(lambda p: resize(load_image(p)).numpy(), paths))
            root = self.root.resolve()
            relative = [p.resolve().relative_to(root).as_posix() for p in paths]
            meta = {"root": str(root), "paths": relative}
            return {"images": np.stack(images).astype(np.uint8)}, meta

        store = open_or_warn(self.store_dir, self.dataset_name, key, build)
        return None if store is None else StoredImages(store, paths)

    def transform(self, train: bool, standardise: bool = True) -> v2.Transform:
        """Return the image transform of the train (optionally augmented) or val split.

        The resize is skipped for images from the packed store (stored resized);
        ``standardise=False`` stops at [0, 1] pixels (where clouds are pasted).
        """
        steps: list[v2.Transform] = [] if self._stored is not None else [self._resize()]
        if train and self.augment:
            steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if standardise:
            steps.append(self.standardisation())
        return v2.Compose(steps)

    def standardisation(self) -> v2.Transform:
        """Per-channel standardisation of [0, 1] pixels (``mean``, ``std``)."""
        return v2.Normalize(self.mean, self.std)

    def subset_dataset(self, subset: SourceSubset) -> SourceScenesDataset:
        """Return the dataset of ``train`` or ``val``."""
        if subset not in SOURCE_SPLITS:
            raise ValueError(f"subset must be one of {list(SOURCE_SPLITS)}, got {subset!r}")
        self.setup()
        train = subset == "train"
        if self.clouds is None:
            return SourceScenesDataset(
                self._subsets[subset], self.root, self.transform(train), self._stored
            )
        return SourceScenesDataset(
            self._subsets[subset],
            self.root,
            self.transform(train, standardise=False),
            self._stored,
            CloudPaster(self.clouds),
            self.standardisation(),
        )

    @property
    def split_rows(self) -> list[SplitRow]:
        """The split (``split`` is ``train`` or ``val``)."""
        self.setup()
        assert self._rows is not None
        return list(self._rows)

    def write_run_files(self, directory: str | Path) -> None:
        """Write ``split.csv`` and ``normalisation.json`` into a run directory (atomically)."""
        directory = Path(directory)
        write_split_csv(self.split_rows, directory / "split.csv")
        write_json(directory / "normalisation.json", self.normalisation)

    def _loader(self, subset: SourceSubset, shuffle: bool) -> DataLoader[Sample]:
        dataset = self.subset_dataset(subset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(dataset, self.split_seed) if shuffle else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Sample]:
        """Shuffled, augmented train split (no ``drop_last``)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Sample]:
        """Serve the held-out split."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader[Sample]:
        """The held-out split (source sets have no separate test split here)."""
        return self._loader("val", shuffle=False)

    def predict_dataloader(self) -> DataLoader[Sample]:
        """Serve the held-out split."""
        return self._loader("val", shuffle=False)


__all__ = ["DataError", "SourceScenesDataModule", "SourceScenesDataset"]
