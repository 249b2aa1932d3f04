"""GPU figure: bf16 training throughput under the Lightning Trainer vs a plain PyTorch loop."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import StepTimer
from cloudxfer.stages import SourceClassification

CLASSES = [f"c{i}" for i in range(10)]


class RandomTiles(Dataset[dict[str, Any]]):
    """Random 6-channel-free optical tiles with labels (what the network sees is irrelevant)."""

    def __init__(self, n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, 64, 64, generator=generator)
        self.labels = torch.randint(0, 10, (n,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"id": f"tile{i}", "image_opt": self.images[i], "label": self.labels[i]}


@dataclass(frozen=True)
class Throughput:
    """bf16 training img/s of one network under the Trainer and in a plain loop."""

    trainer: float
    plain: float

    @property
    def ratio(self) -> float:
        """Trainer img/s divided by plain-loop img/s."""
        return self.trainer / self.plain


def trainer_vs_plain_bf16(backbone: str, batch: int = 256, steps: int = 60) -> Throughput:
    """Train img/s under the Trainer and in a plain loop, both bf16 autocast + channels-last."""
    data = RandomTiles(batch * steps)
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=4, pin_memory=True,
                        persistent_workers=True)  # fmt: skip
    model = SourceClassification(backbone=backbone, class_names=CLASSES, channels_last=True)
    model.configure_model()
    model = model.cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i, b in enumerate(loader):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        b = {k: v.cuda(non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}
        b = model.on_after_batch_transfer(b, 0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(b), b["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize()
    plain = batch * (steps - 5) / (time.perf_counter() - start)
    fresh = SourceClassification(backbone=backbone, class_names=CLASSES, channels_last=True,
                                 scheduler="none")  # fmt: skip
    trainer = pl.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", max_epochs=1,
                         default_root_dir=tempfile.mkdtemp(prefix="cloudxfer-gpu-"),
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         limit_val_batches=0, callbacks=[timer := StepTimer(5)])  # fmt: skip
    trainer.fit(fresh, train_dataloaders=loader)
    torch.cuda.synchronize()
    lightning = batch * (steps - 5) / (timer.end - timer.start)  # batches 5 .. steps-1
    return Throughput(trainer=lightning, plain=plain)
