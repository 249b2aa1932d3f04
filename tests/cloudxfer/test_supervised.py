"""SL's stage: cross-entropy on labels from scratch, any inputs, early or late fusion."""

from __future__ import annotations

import pytest
import torch

from cloudxfer.stages import SupervisedClassification

CLASSES = ["a", "b", "c"]


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image_opt": torch.randn(4, 3, 64, 64, generator=g),
        "image_sar": torch.randn(4, 3, 64, 64, generator=g),
        "label": torch.tensor([0, 1, 2, 1]),
    }


@pytest.mark.parametrize(
    ("inputs", "fusion", "modality"),
    [
        (["image_opt", "image_sar"], "early", "opt+sar"),
        (["image_opt", "image_sar"], "late", "opt+sar"),
        (["image_sar"], "early", "sar"),
    ],
)
def test_loss_is_the_cross_entropy_and_reaches_every_input(
    inputs: list[str], fusion: str, modality: str
) -> None:
    stage = SupervisedClassification(
        inputs=inputs,
        backbone="resnet10",
        fusion=fusion,
        class_names=CLASSES,  # type: ignore[arg-type]
    )
    batch = _batch()
    loss, logs = stage.compute_loss(batch)
    expected = torch.nn.functional.cross_entropy(stage(batch), batch["label"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= logs["train/acc"].item() <= 1.0
    loss.backward()
    assert all(p.grad is not None for p in stage.model.parameters() if p.requires_grad)
    assert stage.inputs == inputs
    assert SupervisedClassification.expected_metadata({"inputs": inputs}) == (
        "supervised",
        modality,
    )
