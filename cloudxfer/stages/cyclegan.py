"""CycIT's CycleGAN training: manual optimisation of generators and discriminators.

CycleGAN (Zhu et al., ICCV 2017) trains two generators (SAR -> optical, optical -> SAR) and
two PatchGAN discriminators with two optimisers, alternating one generator step and one
discriminator step per batch. Lightning's automatic optimisation steps one loss per
optimiser; here ``automatic_optimization`` is off and :meth:`CycleGanTraining.training_step`
runs both steps itself, each with only its own optimiser's parameters trainable
(``toggle_optimizer``). Both optimisers are Adam (CycleGAN's betas) under CycleGAN's
learning-rate policy (:mod:`cloudxfer.lr_policy`: constant for the first half of the epoch
budget, then linear to 0 at its end). Two stages share it: ``cycit_pretrain``
(:class:`CycleGanPretrain`, unpaired target SAR tiles and source-domain optical images) and
``cycit`` (adaptation on the labelled pairs, ``cloudxfer.stages.cycit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from cloudxfer.cycle_losses import CYCLE_WEIGHT, l1_or_zero, lsgan
from cloudxfer.lr_policy import cyclegan_scheduler
from cloudxfer.models.cyclegan import CycleGAN, GeneratorKind
from cloudxfer.stages.base import Batch, StageModule

__all__ = [
    "ADAM_BETAS",
    "CycleGanPretrain",
    "CycleGanTraining",
    "Domains",
    "Fakes",
    "GanSchedule",
    "optical_reference",
]

ADAM_BETAS = (0.5, 0.999)
"""CycleGAN's Adam momentum terms (both optimisers)."""
SAR, OPT = "image_sar", "image_opt"
CLEAR_KEY = "image_opt_clear"
"""Target samples: the clear optical twin (``clear_twins: true``), NaN where withheld."""
AVAILABLE_KEY = "clear_available"
"""Target samples: whether the clear twin is served for the tile."""
GanSchedule = Literal["cyclegan", "none"]
"""``cyclegan``: CycleGAN's policy over ``trainer.max_epochs``; ``none``: a constant rate."""


@dataclass(frozen=True)
class Domains:
    """One step's images: SAR tiles, optical images and which SAR tiles they pair with."""

    sar: Tensor
    """(B, 3, H, W) standardised SAR tiles."""
    opt: Tensor
    """(M, 3, H, W) standardised optical images (M may be 0)."""
    paired: Tensor | None = None
    """(B,) bool: the SAR tiles whose optical twin is ``opt`` (in order); None: unpaired."""


@dataclass(frozen=True)
class Fakes:
    """The generator step's translations, handed (detached) to the discriminator step."""

    opt: Tensor
    """SAR tiles translated to optical, (B, 3, H, W)."""
    sar: Tensor
    """Optical images translated to SAR, (M, 3, H, W)."""


def optical_reference(batch: Batch) -> tuple[Tensor, Tensor]:
    """Each tile's cloud-free optical image, and which tiles have one, (B, 3, H, W), (B,).

    The clear twin where the data serves it; else the tile's own optical image where its
    cloud fraction is known to be 0 (a tile the cloud plan left clear, or a Hunan-style tile
    its mask calls clear); no reference for a clouded or cover-unknown tile without twin.
    """
    optical = batch["image_opt"]
    fraction = batch["cloud_fraction"].float()
    own = fraction == 0.0  # NaN (unknown) compares False
    twin = batch.get(AVAILABLE_KEY, torch.zeros_like(own)).bool()
    reference = optical
    if CLEAR_KEY in batch:
        reference = torch.where(twin.view(-1, 1, 1, 1), batch[CLEAR_KEY], optical)
    return reference, twin | own


def _discriminator_term(judge: torch.nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """``(lsgan(D(real), 1) + lsgan(D(fake), 0)) / 2``; 0 when either side is empty.

    A discriminator shown only fakes (no real image in the batch) would learn to call
    everything fake, so such a batch leaves it alone.
    """
    if not len(real) or not len(fake):  # a zero with a graph, so the step still runs
        return torch.stack([p.sum() for p in judge.parameters()]).sum() * 0.0
    return 0.5 * (lsgan(judge(real), True) + lsgan(judge(fake.detach()), False))


class CycleGanTraining(StageModule):
    """Manual-optimisation CycleGAN steps; subclasses say what a batch's domains are.

    Generator step: LSGAN adversarial terms, ``cycle_weight`` x cycle-consistency L1, and
    ``paired_weight`` x L1 between translated SAR tiles and their optical twins (where the
    subclass pairs them). Discriminator step: LSGAN real/fake terms on the step's images and
    the generator step's detached translations. Both optimisers are AdamW (CycleGAN's Adam
    betas 0.5, 0.999; no decay at ``weight_decay`` 0) at ``lr``, under ``scheduler``
    (stepped per epoch). ``optimizer`` must be ``adamw`` (SGD is no GAN optimiser here).

    Args:
        generator: ``resnet`` (CycleGAN's ResNet generator) or ``unet`` (compact U-Net).
        width: Generator width (first convolution's channels).
        blocks: Residual blocks of the ResNet generator (CycleGAN: 9 at 256 px, 6 at 128 px;
            the default 6 is the paper profile's for 64 px tiles).
        disc_width: PatchGAN discriminator width.
        disc_layers: PatchGAN stride-2 convolutions (3: CycleGAN's 70 x 70 patches).
        cycle_weight: weight of the cycle-consistency L1 (CycleGAN: 10).
        paired_weight: weight of the paired SAR -> optical L1 (0: unpaired training).
        scheduler: ``cyclegan`` (constant for the first half of ``trainer.max_epochs``, then
            linear to 0 at its end: :mod:`cloudxfer.lr_policy`) or ``none``; it replaces the
            base class's schedules (early stopping would end it before its decay).
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    def __init__(
        self,
        generator: GeneratorKind = "resnet",
        width: int = 64,
        blocks: int = 6,
        disc_width: int = 64,
        disc_layers: int = 3,
        cycle_weight: float = CYCLE_WEIGHT,
        paired_weight: float = 0.0,
        scheduler: GanSchedule = "cyclegan",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("optimizer", "adamw")
        if scheduler not in ("cyclegan", "none"):
            raise ValueError(f"scheduler must be 'cyclegan' or 'none', got {scheduler!r}")
        kwargs["scheduler"] = scheduler  # recorded as the fit's schedule (training.json)
        super().__init__(**kwargs)
        if self.optim["optimizer"] != "adamw":
            raise ValueError(
                f"{type(self).__name__} trains with adamw, not {self.optim['optimizer']}"
            )
        self.automatic_optimization = False
        self.cycle_weight = cycle_weight
        self.paired_weight = paired_weight
        self.networks: dict[str, Any] = {
            "generator": generator,
            "width": width,
            "blocks": blocks,
            "disc_width": disc_width,
            "disc_layers": disc_layers,
        }
        """The CycleGAN's sizes (:class:`~cloudxfer.models.cyclegan.CycleGAN`'s arguments)."""

    # --- subclasses -------------------------------------------------------------------
    @property
    def cyclegan(self) -> CycleGAN:
        """The trained networks."""
        raise NotImplementedError

    def domains(self, batch: Batch) -> Domains:
        """Return the SAR tiles and optical images of a training batch."""
        raise NotImplementedError

    # --- objectives -------------------------------------------------------------------
    def generator_objective(self, d: Domains) -> tuple[Tensor, dict[str, Tensor], Fakes]:
        """Adversarial + weighted cycle (+ weighted paired) loss of both generators."""
        gan = self.cyclegan
        fake_opt = gan.sar_to_opt(d.sar)
        fake_sar = gan.opt_to_sar(d.opt)
        adversarial = lsgan(gan.d_opt(fake_opt), True)
        if len(d.opt):
            adversarial = adversarial + lsgan(gan.d_sar(fake_sar), True)
        cycle = l1_or_zero(gan.opt_to_sar(fake_opt), d.sar) + l1_or_zero(
            gan.sar_to_opt(fake_sar), d.opt
        )
        loss = adversarial + self.cycle_weight * cycle
        logs = {"loss/adversarial": adversarial.detach(), "loss/cycle": cycle.detach()}
        if d.paired is not None:
            paired = l1_or_zero(fake_opt[d.paired], d.opt)
            loss = loss + self.paired_weight * paired
            logs.update(
                {"loss/paired": paired.detach(), "gan/paired_share": d.paired.float().mean()}
            )
        return loss, logs, Fakes(fake_opt.detach(), fake_sar.detach())

    def discriminator_objective(self, d: Domains, fakes: Fakes) -> Tensor:
        """LSGAN loss of both discriminators on real images and the generators' fakes."""
        gan = self.cyclegan
        return _discriminator_term(gan.d_opt, d.opt, fakes.opt) + _discriminator_term(
            gan.d_sar, d.sar, fakes.sar
        )

    def cycle_loss(self, sar: Tensor) -> Tensor:
        """Cycle-consistency L1 of SAR tiles through both generators (SAR -> opt -> SAR)."""
        gan = self.cyclegan
        return l1_or_zero(gan.opt_to_sar(gan.sar_to_opt(sar)), sar)

    # --- training ---------------------------------------------------------------------
    def _optimisers(self) -> tuple[LightningOptimizer, LightningOptimizer]:
        optimisers = cast(list[LightningOptimizer], self.optimizers())
        return optimisers[0], optimisers[1]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """One generator step, then one discriminator step (manual optimisation)."""
        opt_g, opt_d = self._optimisers()
        d = self.domains(batch)
        self.toggle_optimizer(opt_g)  # discriminators frozen while the generators step
        loss_g, logs, fakes = self.generator_objective(d)
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.toggle_optimizer(opt_d)  # and the generators while the discriminators step
        loss_d = self.discriminator_objective(d, fakes)
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        logs["loss/discriminator"] = loss_d.detach()
        logs["gan/lr"] = torch.tensor(float(opt_g.optimizer.param_groups[0]["lr"]))
        self.record_training_step(loss_g, logs, len(d.sar))
        return loss_g.detach()

    def on_train_epoch_end(self) -> None:
        """Step the per-epoch schedulers (manual optimisation steps none), then record."""
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler is not None:
                scheduler.step()
        super().on_train_epoch_end()

    def configure_optimizers(self) -> Any:
        """AdamW over the generators and AdamW over the discriminators (CycleGAN's betas).

        With ``scheduler`` ``cyclegan`` each gets CycleGAN's policy over the fit's
        ``max_epochs`` (stepped in :meth:`on_train_epoch_end`: manual optimisation steps no
        scheduler itself).
        """
        gan, hp = self.cyclegan, self.optim
        optimisers = [
            torch.optim.AdamW(
                list(parameters), lr=hp["lr"], betas=ADAM_BETAS, weight_decay=hp["weight_decay"]
            )
            for parameters in (gan.generator_parameters(), gan.discriminator_parameters())
        ]
        if hp["scheduler"] == "none":
            return optimisers
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError(
                "CycleGAN's learning-rate policy decays over trainer.max_epochs: set it (or "
                "scheduler none)"
            )
        return optimisers, [cyclegan_scheduler(optimiser, epochs) for optimiser in optimisers]


class CycleGanPretrain(CycleGanTraining):
    """CycIT's pre-training: unpaired CycleGAN between target SAR and source optical images.

    Trains on the datamodule's combined streams (``source_stream`` set): ``target`` (the
    target train split's tiles, of which only the SAR image is read: unlabelled target data)
    and ``source`` (source-domain optical images, standardised as the target's optical
    tiles). Held-out loss: the L1 between the held-out target tiles' translated SAR and their
    own optical image, on the tiles known to be clear (:func:`optical_reference`; read only
    to rank epochs, never trained on). A fixed function of the SAR -> optical generator,
    the one CycIT uses; the adversarial terms move with the discriminators and cannot rank
    epochs, and the cycle L1 measures how well the pair of generators undo each other, not
    how close G(SAR) comes to the optical tile (untrained U-Net generators, the identity,
    score it 0).

    Args:
        generator: ``resnet`` (CycleGAN's ResNet generator) or ``unet`` (compact U-Net).
        width: Generator width (first convolution's channels).
        blocks: Residual blocks of the ResNet generator.
        disc_width: PatchGAN discriminator width.
        disc_layers: PatchGAN stride-2 convolutions.
        cycle_weight: weight of the cycle-consistency L1 (CycleGAN: 10).
        scheduler: ``cyclegan`` (CycleGAN's policy over ``trainer.max_epochs``) or ``none``.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "cycit_pretrain"

    def __init__(
        self,
        generator: GeneratorKind = "resnet",
        width: int = 64,
        blocks: int = 6,
        disc_width: int = 64,
        disc_layers: int = 3,
        cycle_weight: float = CYCLE_WEIGHT,
        scheduler: GanSchedule = "cyclegan",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            generator, width, blocks, disc_width, disc_layers, cycle_weight, 0.0, scheduler,
            **kwargs,
        )  # fmt: skip
        self.save_hyperparameters()
        self.model = CycleGAN(**self.networks)

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, "sar"

    @property
    def cyclegan(self) -> CycleGAN:
        """The CycleGAN (the whole model)."""
        return cast(CycleGAN, self.model)

    def domains(self, batch: Batch) -> Domains:
        """Target SAR tiles and source optical images of a combined batch (unpaired)."""
        if "source" not in batch:
            raise ValueError(
                f"{type(self).__name__} needs source images beside the target tiles: set the "
                "datamodule's source_stream (--data.init_args.source_stream=<source root>)"
            )
        return Domains(batch["target"][SAR], batch["source"][OPT])

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the held-out objective: translated SAR vs the clear tiles' own optical (L1)."""
        reference, has = optical_reference(batch)
        loss = l1_or_zero(self.cyclegan.sar_to_opt(batch[SAR][has]), reference[has])
        return loss, {"loss/paired": loss.detach(), "gan/paired_share": has.float().mean()}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Log the held-out objective on held-out target tiles (nothing is classified)."""
        loss, _ = self.compute_loss(batch)
        n = len(batch["id"])
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self._val_means.add({"loss": loss}, n)
