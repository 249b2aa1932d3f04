"""The CycIT row's CycleGAN: two generators and two PatchGAN discriminators, SAR <-> optical.

``sar_to_opt`` translates a standardised SAR tile (VV, VH, VV-VH) into an optical-style one
(R, G, B, in the optical standardisation f_S reads); ``opt_to_sar`` goes back. The generators
are CycleGAN's ResNet generator (:class:`~cloudxfer.models.resnet_generator.ResnetGenerator`,
the default) or the project's compact residual U-Net (``generator="unet"``, the earlier
CPU-sized choice; an untrained one is the identity); ``d_opt`` and ``d_sar`` judge optical and
SAR tiles patch by patch. One module, so one checkpoint holds all four, and its ``spec`` (saved
in every checkpoint) names the generator, its size and parameter count, from which
:meth:`CycleGAN.from_spec` and :func:`load_translator` rebuild it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

from cloudxfer.checkpoints import CheckpointError, load_weights
from cloudxfer.models.patchgan import PatchDiscriminator
from cloudxfer.models.resnet_generator import ResnetGenerator
from cloudxfer.models.unet import CompactUNet

__all__ = ["DISCRIMINATORS", "GENERATORS", "CycleGAN", "GeneratorKind", "load_translator"]

GENERATORS = ("sar_to_opt", "opt_to_sar")
"""Attribute names of the generators (their parameters form the generator optimiser's)."""
DISCRIMINATORS = ("d_opt", "d_sar")
"""Attribute names of the discriminators."""
GeneratorKind = Literal["resnet", "unet"]
"""``resnet``: CycleGAN's ResNet generator; ``unet``: the compact residual U-Net."""
TRANSLATOR = "translator."
"""Where a ``cycit`` checkpoint's CycleGAN weights sit under its model's."""


def _generator(kind: GeneratorKind, width: int, blocks: int) -> ResnetGenerator | CompactUNet:
    if kind == "resnet":
        return ResnetGenerator(width, blocks)
    if kind == "unet":
        return CompactUNet(width)
    raise ValueError(f"generator must be 'resnet' or 'unet', got {kind!r}")


class CycleGAN(nn.Module):
    """SAR <-> optical generators and discriminators; ``forward`` translates SAR to optical.

    Args:
        generator: ``resnet`` (CycleGAN's) or ``unet`` (compact residual U-Net).
        width: First-layer channels of both generators (U-Net: a multiple of 4).
        blocks: Residual blocks of the ResNet generators (ignored by the U-Net; CycleGAN: 6
            for 128 px images, 9 for 256 px).
        disc_width: First-layer channels of both PatchGAN discriminators.
        disc_layers: Stride-2 convolutions of the discriminators (3: 70 x 70 patches).

    """

    def __init__(
        self,
        generator: GeneratorKind = "resnet",
        width: int = 64,
        blocks: int = 6,
        disc_width: int = 64,
        disc_layers: int = 3,
    ) -> None:
        super().__init__()
        self.sar_to_opt = _generator(generator, width, blocks)
        self.opt_to_sar = _generator(generator, width, blocks)
        self.d_opt = PatchDiscriminator(disc_width, disc_layers)
        self.d_sar = PatchDiscriminator(disc_width, disc_layers)
        self.inputs = ["image_sar"]
        self.spec: dict[str, Any] = {
            "kind": "cyclegan",
            "generator": {
                **self.sar_to_opt.spec,
                "parameters": sum(p.numel() for p in self.sar_to_opt.parameters()),
            },
            "discriminator": dict(self.d_opt.spec),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> CycleGAN:
        """Rebuild the networks a checkpoint's ``spec`` records (weights not loaded).

        Raises:
            ValueError: the spec is no CycleGAN's, or of the format before the ResNet
                generator (no ``generator`` entry), or rebuilds another parameter count.

        """
        if spec.get("kind") != "cyclegan" or "generator" not in spec:
            raise ValueError(
                f"not a CycleGAN spec of this version (a ResNet or U-Net generator): {spec}"
            )
        g, d = spec["generator"], spec["discriminator"]
        gan = cls(g["kind"], int(g["width"]), int(g.get("blocks", 0)), d["width"], d["layers"])
        if gan.spec != spec:
            raise ValueError(f"spec {spec} rebuilds a different CycleGAN: {gan.spec}")
        return gan

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of both generators (one optimiser, as CycleGAN)."""
        for name in GENERATORS:
            yield from getattr(self, name).parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of both discriminators (the other optimiser)."""
        for name in DISCRIMINATORS:
            yield from getattr(self, name).parameters()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Optical-style translation of the batch's SAR tiles, (B, 3, H, W)."""
        return self.sar_to_opt(batch["image_sar"])  # type: ignore[no-any-return]


def load_translator(
    path: str | Path, stages: Collection[str] = ("cycit_pretrain", "cycit")
) -> tuple[CycleGAN, dict[str, Any]]:
    """Rebuild the CycleGAN of a ``cycit_pretrain`` or ``cycit`` checkpoint, with its weights.

    Returns:
        ``(cyclegan, metadata)``; the networks in training mode, as a stage starts them.

    Raises:
        CheckpointError: naming ``path``: another stage, no CycleGAN spec of this version,
            or weights that do not fit the recorded networks.

    """
    state, meta = load_weights(path, stages)
    spec = dict(meta["model"])
    if spec.get("kind") == "translate_then_classify":  # a cycit run: CycleGAN, then f_S
        spec = dict(spec["translator"])
        state = {k[len(TRANSLATOR) :]: v for k, v in state.items() if k.startswith(TRANSLATOR)}
    try:
        gan = CycleGAN.from_spec(spec)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err} (retrain it with this version)") from err
    try:
        gan.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not match the recorded CycleGAN ({err})"
        ) from err
    return gan, meta
