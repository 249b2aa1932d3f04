"""TLF's stage: labels only on labelled samples, f_S's pseudo-labels on the others."""

from __future__ import annotations

import pytest
import torch

from cloudxfer.stages import LateFusionDistillation

CLASSES = ["a", "b", "c"]


def _stage(teacher_logits: torch.Tensor) -> LateFusionDistillation:
    stage = LateFusionDistillation(teacher="unused.ckpt", backbone="resnet10", class_names=CLASSES)
    stage.teacher_outputs = lambda batch: {"source": teacher_logits}  # type: ignore[method-assign]
    return stage


def _batch(labels: list[int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image_opt": torch.randn(4, 3, 64, 64, generator=g),
        "image_sar": torch.randn(4, 3, 64, 64, generator=g),
        "label": torch.tensor(labels),
        "labelled": torch.tensor([True, True, False, False]),
    }


def test_labels_of_unlabelled_tiles_and_pseudo_labels_of_labelled_ones_are_never_used() -> None:
    teacher = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    torch.manual_seed(0)
    stage = _stage(teacher).eval()  # eval: batch-norm does not depend on the batch's order
    loss, logs = stage.compute_loss(_batch([0, 1, 2, 2]))
    other_labels, _ = stage.compute_loss(_batch([0, 1, 0, 1]))  # unlabelled tiles' labels
    assert other_labels.item() == pytest.approx(loss.item())
    changed = teacher.clone()
    changed[:2] = torch.tensor([[0, 0, 5.0], [0, 0, 5.0]])  # labelled tiles' pseudo-labels
    stage.teacher_outputs = lambda batch: {"source": changed}  # type: ignore[method-assign]
    assert stage.compute_loss(_batch([0, 1, 2, 2]))[0].item() == pytest.approx(loss.item())
    logits = stage(_batch([0, 1, 2, 2]))
    ce = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
    kd = torch.nn.functional.cross_entropy(logits[2:], torch.tensor([2, 0]))
    assert loss.item() == pytest.approx((ce + kd).item(), rel=1e-5)
    assert logs["train/labelled_share"].item() == 0.5
    assert set(stage.model.encoders) == {"image_opt", "image_sar"}  # one encoder per modality
