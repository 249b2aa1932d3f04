"""The protocol's initialisation: encoders from a source pre-training, one stem rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cloudxfer.models import LateFusionClassifier, SceneClassifier
from cloudxfer.models.initialise import (
    InitialisationError,
    encoders_of,
    load_encoder_state,
    read_encoder_state,
    stem_weight,
)
from cloudxfer.stages import AuxiliaryDistillation

CLASSES = ["a", "b", "c"]


def _pretrained(path: Path, backbone: str = "resnet10") -> SceneClassifier:
    """Save a source-pretrain-like checkpoint (other classes: 5) and return its network."""
    torch.manual_seed(0)
    net = SceneClassifier(backbone, ["image_opt"], 5)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    meta = {"stage": "source_pretrain", "model": dict(net.spec), "class_names": list("vwxyz")}
    torch.save({"state_dict": state, "cloudxfer": meta}, path)
    return net


def test_the_stem_rule_keeps_rgb_greys_sar_and_scales_by_channels() -> None:
    rgb = torch.randn(8, 3, 7, 7)
    assert torch.equal(stem_weight(rgb, ["image_opt"]), rgb)
    grey = rgb.mean(dim=1, keepdim=True)
    sar = stem_weight(rgb, ["image_sar"])
    assert torch.allclose(sar, grey.expand(-1, 3, -1, -1))
    fused = stem_weight(rgb, ["image_opt", "image_sar"])
    assert fused.shape == (8, 6, 7, 7)
    assert torch.allclose(fused[:, :3], rgb / 2) and torch.allclose(fused[:, 3:], sar / 2)
    # an input whose channels are all equal keeps the stem's response
    x = torch.rand(1, 1, 7, 7)
    response = (rgb * x).sum()
    assert torch.allclose((fused * x).sum(), response, atol=1e-4)
    with pytest.raises(InitialisationError, match="3 input channels"):
        stem_weight(torch.randn(8, 6, 7, 7), ["image_opt"])


def test_every_encoder_of_a_late_fusion_network_starts_pretrained(tmp_path: Path) -> None:
    source = _pretrained(tmp_path / "pre.ckpt")
    state, backbone = read_encoder_state(tmp_path / "pre.ckpt")
    assert backbone == "resnet10"
    net = LateFusionClassifier("resnet10", ["image_opt", "image_sar"], 3)
    for _, encoder, inputs in encoders_of(net):
        load_encoder_state(encoder, state, inputs, tmp_path / "pre.ckpt")
    opt, sar = net.encoders["image_opt"], net.encoders["image_sar"]
    assert torch.equal(opt.layer1[0].conv1.weight, source.encoder.layer1[0].conv1.weight)
    assert torch.equal(sar.layer4[0].bn2.running_mean, source.encoder.layer4[0].bn2.running_mean)
    assert torch.equal(opt.conv1.weight, source.encoder.conv1.weight)
    assert torch.allclose(sar.conv1.weight, stem_weight(source.encoder.conv1.weight, ["image_sar"]))


def test_init_loads_before_teachers_and_groups_pretrained_parameters(tmp_path: Path) -> None:
    source = _pretrained(tmp_path / "pre.ckpt")
    stage = AuxiliaryDistillation(
        class_names=CLASSES, modality="sar", backbone="resnet10", init=str(tmp_path / "pre.ckpt")
    )
    with pytest.raises(ValueError, match="teacher's checkpoint is not set"):
        stage.setup("fit")  # the initial weights load first; the missing teacher is refused
    assert stage.initialisation == str(tmp_path / "pre.ckpt")
    encoder = stage.model.encoder  # type: ignore[union-attr]
    assert torch.equal(encoder.layer2[0].conv2.weight, source.encoder.layer2[0].conv2.weight)
    groups = stage.param_groups()
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]  # head at lr, encoder at lr_pretrained
    head = {id(p) for p in stage.model.head.parameters()}  # type: ignore[union-attr]
    assert {id(p) for p in groups[0]["params"]} == head
    assert len(groups[1]["params"]) == len(list(encoder.parameters()))
    assert stage.protocol_record()["lr_pretrained"] == 1e-3


def test_scratch_trains_one_group_and_records_scratch() -> None:
    stage = AuxiliaryDistillation(class_names=CLASSES, backbone="resnet10", init="scratch")
    groups = stage.param_groups()
    assert len(groups) == 1 and groups[0]["lr"] == 1e-2
    record = stage.protocol_record()
    assert record["initialisation"] == "scratch" and record["lr_pretrained"] is None
    with pytest.raises(ValueError, match="names the protocol, not a file"):
        AuxiliaryDistillation(class_names=CLASSES, backbone="resnet10", init="source")


def test_bad_initial_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InitialisationError, match="initial weights not found"):
        read_encoder_state(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(InitialisationError, match="junk.ckpt: not a readable weights file"):
        read_encoder_state(tmp_path / "junk.ckpt")
    _pretrained(tmp_path / "r18.ckpt", backbone="resnet18")
    stage = AuxiliaryDistillation(
        class_names=CLASSES, backbone="resnet10", init=str(tmp_path / "r18.ckpt")
    )
    with pytest.raises(InitialisationError, match="initial weights of a 'resnet18'"):
        stage.setup("fit")
    # a plain state_dict of another architecture: the tensors do not fit
    torch.save(
        SceneClassifier("resnet18", ["image_opt"], 5).encoder.state_dict(), tmp_path / "sd.pt"
    )
    state, backbone = read_encoder_state(tmp_path / "sd.pt")
    assert backbone == ""
    net = SceneClassifier("resnet10", ["image_opt"], 3)
    with pytest.raises(InitialisationError, match="sd.pt: weights do not fit the network"):
        load_encoder_state(net.encoder, state, ["image_opt"], tmp_path / "sd.pt")
