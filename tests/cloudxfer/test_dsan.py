"""The DSAN stage: its network and groups, schedule, objective and per-stream batch-norm."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from cloudxfer.lmmd import lmmd_ramp
from cloudxfer.models import BottleneckClassifier, build_model
from cloudxfer.stages import SubdomainAdaptation
from cloudxfer.stream_statistics import batch_norms

NAMES = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensors: one intra-op thread (two threads spin for seconds on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dsan(**kwargs: Any) -> SubdomainAdaptation:
    return SubdomainAdaptation(backbone="resnet10", class_names=NAMES, **kwargs)


def _batch(seed: int, optical_shift: float = 3.0, sar_shift: float = -2.0) -> dict[str, Any]:
    """A training step's streams: optical and SAR images of clearly different statistics."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "labelled": {
            "image_opt": torch.randn(4, 3, 32, 32, generator=generator) + optical_shift,
            "image_sar": torch.randn(4, 3, 32, 32, generator=generator) + sar_shift,
            "label": torch.tensor([0, 1, 2, 1]),
        },
        "target": {
            "image_sar": torch.randn(6, 3, 32, 32, generator=generator) + sar_shift,
            "id": [str(i) for i in range(6)],
        },
    }


def _statistics(network: nn.Module) -> list[torch.Tensor]:
    return [
        tensor
        for _, module in batch_norms(network)
        for tensor in (module.running_mean, module.running_var)
    ]


def test_network_has_a_bottleneck_and_its_spec_rebuilds_it() -> None:
    module = _dsan()
    net = module.network
    assert isinstance(net.bottleneck, nn.Sequential) and len(net.bottleneck) == 1  # no ReLU
    assert net.bottleneck[0].out_features == 256 and net.head.in_features == 256
    assert net.encoder_inputs() == [("encoder", ["image_opt"])]  # RGB stem: optical source
    assert module.inputs == ["image_sar"]  # scored on SAR
    spec = module.stage_metadata()["model"]
    assert spec["kind"] == "bottleneck" and spec["options"]["width"] == 256
    rebuilt = build_model(spec)
    assert isinstance(rebuilt, BottleneckClassifier)
    rebuilt.load_state_dict(net.state_dict())  # strict: the same layers
    assert _dsan(bottleneck_relu=True).network.bottleneck[1].__class__ is nn.ReLU


def test_protocol_init_starts_the_encoder_and_the_source_statistics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = _dsan().network.encoder
    for _, module in batch_norms(pretrained):  # statistics of a "source set"
        module.running_mean.fill_(0.25)
    weights = tmp_path / "encoder.pt"
    torch.save(pretrained.state_dict(), weights)
    module = _dsan(init=str(weights), lr_pretrained=1e-3, lr=1e-2)
    module.setup("fit")
    for name, tensor in pretrained.state_dict().items():
        torch.testing.assert_close(module.network.encoder.state_dict()[name], tensor)
    assert module.source_statistics is not None
    torch.testing.assert_close(
        module.source_statistics.bn0_running_mean, pretrained.bn1.running_mean
    )
    groups = {group["name"]: group["lr"] for group in module.param_groups()}
    assert groups == {"bottleneck": 1e-2, "head": 1e-2, "backbone": 1e-3}


def test_inverse_schedule_keeps_the_groups_ten_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _dsan(lr=1e-2, lr_pretrained=1e-3, scheduler="inverse")
    module.mark_pretrained("model.encoder", dict(module.network.encoder.named_parameters()))
    total = 50
    monkeypatch.setattr(
        SubdomainAdaptation, "trainer", SimpleNamespace(estimated_stepping_batches=total)
    )
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert [group["name"] for group in optimizer.param_groups] == ["bottleneck", "head", "backbone"]
    for step in range(total + 1):
        lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
        factor = (1 + 10 * step / total) ** -0.75
        assert lrs["backbone"] == pytest.approx(1e-3 * factor)
        assert lrs["head"] == pytest.approx(10 * lrs["backbone"]) == lrs["bottleneck"]
        optimizer.step()
        scheduler.step()
    # from scratch (profile init scratch) nothing is pre-trained: every group at lr
    scratch = {group["name"]: group["lr"] for group in _dsan(lr=1e-2).param_groups()}
    assert set(scratch.values()) == {1e-2}


def test_test_time_batch_norm_uses_the_sar_statistics_only() -> None:
    torch.manual_seed(0)
    module = _dsan()
    sar_only = copy.deepcopy(module.network)  # replays the SAR batches alone
    optical_only = copy.deepcopy(module.network)  # replays the optical batches alone
    blended = _dsan(bn_statistics="shared")
    blended.model.load_state_dict(module.model.state_dict())
    for net in (module, sar_only, optical_only, blended):
        net.train()
    batches = [_batch(seed) for seed in range(3)]
    with torch.no_grad():
        for batch in batches:  # no optimiser step: the weights stay, only statistics move
            module.compute_loss(batch)
            blended.compute_loss(batch)
            sar_only.embed(batch["target"]["image_sar"])
            optical_only.embed(batch["labelled"]["image_opt"])
    for ours, theirs in zip(_statistics(module.network), _statistics(sar_only), strict=True):
        torch.testing.assert_close(ours, theirs)
    assert module.source_statistics is not None
    stored = [
        getattr(module.source_statistics, f"bn{index}_{name}")
        for index in range(len(batch_norms(module.network)))
        for name in ("running_mean", "running_var")
    ]
    for ours, theirs in zip(stored, _statistics(optical_only), strict=True):
        torch.testing.assert_close(ours, theirs)
    # shared statistics blend both streams: they differ from the SAR-only ones
    first = _statistics(blended.network)[0]
    assert not torch.allclose(first, _statistics(sar_only)[0], atol=1e-3)
    # at test time the network normalises SAR with its SAR statistics
    module.eval()
    sar_only.eval()
    test = {"image_sar": batches[0]["target"]["image_sar"]}
    with torch.no_grad():
        torch.testing.assert_close(module(test), sar_only(test))


def test_ablations_read_the_target_stream_as_they_say() -> None:
    """Without LMMD the loss never depends on the target images; bn_only reads them for the
    batch-norm statistics alone, the source-only row not at all."""
    torch.manual_seed(0)
    batch = _batch(0)
    for bn_statistics, stream in (("target", "target"), ("shared", "labelled")):
        module = _dsan(lmmd_weight=0.0, bn_statistics=bn_statistics)
        other, replay = copy.deepcopy(module), copy.deepcopy(module.network)
        for net in (module, other, replay):
            net.train()
        loss, logs = module.compute_loss(batch)
        loss_other, _ = other.compute_loss(_batch(0, sar_shift=5.0))
        torch.testing.assert_close(loss, loss_other)
        assert "loss/lmmd" not in logs and loss.requires_grad
        with torch.no_grad():  # the statistics are the SAR batch's (bn_only), the optical's
            replay.embed(batch[stream][f"image_{'sar' if stream == 'target' else 'opt'}"])
        for ours, theirs in zip(_statistics(module.network), _statistics(replay), strict=True):
            torch.testing.assert_close(ours, theirs)


def test_loss_ramps_lmmd_at_half_weight_and_scores_held_out_tiles_at_the_end_weight() -> None:
    module = _dsan()
    assert module.hparams["lmmd_weight"] == 0.5
    module.progress = lambda: 0.1  # type: ignore[method-assign]  # early in training
    module.train()
    assert module.lmmd_weight_now() == pytest.approx(0.5 * lmmd_ramp(0.1))
    with torch.no_grad():
        loss, logs = module.compute_loss(_batch(0))
    expected = logs["loss/supervised"] + 0.5 * lmmd_ramp(0.1) * logs["loss/lmmd"]
    torch.testing.assert_close(loss, expected)
    assert 1 <= float(logs["lmmd/classes"]) <= 3
    module.eval()
    assert module.lmmd_weight_now() == pytest.approx(0.5 * lmmd_ramp(1.0))


def test_target_label_term_adds_weighted_cross_entropy_on_labelled_target_images() -> None:
    torch.manual_seed(0)
    plain = _dsan()
    anchored = _dsan(target_label_weight=0.5)
    anchored.model.load_state_dict(plain.model.state_dict())
    plain.eval()
    anchored.eval()
    batch = _batch(0)
    with torch.no_grad():
        loss_plain, logs_plain = plain.compute_loss(batch)
        loss_anchored, logs = anchored.compute_loss(batch)
        sar_logits = plain.network.head(plain.network.embed(batch["labelled"]["image_sar"]))
    expected = torch.nn.functional.cross_entropy(sar_logits, batch["labelled"]["label"])
    assert "loss/supervised_target" not in logs_plain
    torch.testing.assert_close(logs["loss/supervised_target"], expected)
    torch.testing.assert_close(loss_anchored, loss_plain + 0.5 * expected)


def test_known_shift_reads_clear_twins_as_source_and_is_scored_on_optical() -> None:
    module = _dsan(source_input="image_opt_clear", target_input="image_opt")
    assert module.inputs == ["image_opt"]
    assert module.network.encoder_inputs() == [("encoder", ["image_opt"])]
    assert SubdomainAdaptation.expected_metadata({"target_input": "image_opt"}) == ("dsan", "opt")
    held_out = {  # a plain (held-out) batch: the labelled flag picks the source side
        "image_opt_clear": torch.randn(3, 3, 32, 32),
        "image_opt": torch.randn(3, 3, 32, 32),
        "label": torch.tensor([0, 1, 2]),
        "labelled": torch.tensor([True, False, True]),
        "id": ["0", "1", "2"],
    }
    module.eval()
    with torch.no_grad():
        loss, logs = module.compute_loss(held_out)
    assert torch.isfinite(loss) and "loss/lmmd" in logs


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("lmmd_weight", -0.5, "lmmd_weight must be >= 0, got -0.5"),
        ("target_label_weight", -0.5, "target_label_weight must be >= 0, got -0.5"),
        ("bn_statistics", "mixed", "unknown bn_statistics 'mixed'"),
        ("target_input", "image_opt", "source and target both read image_opt"),
    ],
)
def test_dsan_refuses_bad_settings(argument: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _dsan(**{argument: value})
