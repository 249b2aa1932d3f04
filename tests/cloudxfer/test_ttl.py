"""TTL: the intermediate domain's SAR share, and SAR alone when scoring."""

from __future__ import annotations

import pytest
import torch

from cloudxfer.stages import TransitiveTransfer
from cloudxfer.stages.ttl import sar_share


def test_the_bridge_moves_from_optical_to_sar_then_stays() -> None:
    assert [sar_share(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert sar_share(0, 0) == 1.0  # no bridge: SAR from the start
    with pytest.raises(ValueError, match="bridge_epochs"):
        TransitiveTransfer(backbone="resnet10", class_names=["a", "b"], bridge_epochs=-1)


def test_blends_in_training_and_sar_alone_when_scoring() -> None:
    stage = TransitiveTransfer(backbone="resnet10", class_names=["a", "b"], bridge_epochs=4)
    seen: list[torch.Tensor] = []
    stage.model.register_forward_pre_hook(lambda _, args: seen.append(args[0]["image_sar"]))
    batch = {
        "image_opt": torch.zeros(2, 3, 32, 32),
        "image_sar": torch.ones(2, 3, 32, 32),
        "label": torch.tensor([0, 1]),
    }
    stage.train()
    _, logs = stage.compute_loss(batch)  # no trainer: epoch 0, the optical end
    assert float(logs["ttl/sar_share"]) == 0.0 and torch.equal(seen[-1], batch["image_opt"])
    stage.eval()
    _, logs = stage.compute_loss(batch)
    assert float(logs["ttl/sar_share"]) == 1.0 and torch.equal(seen[-1], batch["image_sar"])
