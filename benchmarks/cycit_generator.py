"""Seconds per step and per epoch of CycIT's CycleGAN, by generator size, on this machine.

One training step is what ``CycleGanTraining.training_step`` does, without Lightning: the
generator step (both generators, adversarial + cycle (+ paired) losses, discriminators frozen),
then the discriminator step (generators frozen), each with its own AdamW. Random standardised
tiles of 64 px; batches of 32 for ``cycit_pretrain`` (the profile's batch size) and of 8 for
``cycit`` (its card's); channels-last as the quick profile. Seconds per epoch are the median
step times the steps of one quick-profile epoch (``translation_pretrain_batches``, and the
labelled pairs less the held-out ones in batches of 8); the held-out pass (generator forward
only) is not counted. Wall time depends on what else runs on the cores (the load average is
printed); the FLOPs of a step do not, and with ``--threads 1`` its CPU time hardly does. What
the quick profile's generator size rests on (docs/baselines.md).

    python -m benchmarks.cycit_generator --threads 2 --widths 16 32 64 --blocks 6
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import profile
from cloudxfer.models.cyclegan import CycleGAN
from cloudxfer.runtime import configure_threads
from cloudxfer.stages.cyclegan import ADAM_BETAS, CycleGanPretrain, Domains

TILE = 64
LABELLED = 200
"""Labelled pairs (20 per class, 10 classes); ``cycit`` trains on those not held out."""
VAL_FRACTION = 0.1
"""The data-set file's share of a stage's training tiles held out."""
ADAPT_BATCH = 8
"""``cycit``'s batches (its card's ``data_args``)."""


def _set_trainable(module: nn.Module, on: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(on)


@dataclass(frozen=True)
class StepTime:
    """One training step: median wall-clock seconds and floating-point operations."""

    wall: float
    cpu: float
    """Median CPU seconds of the process (all its threads): with one thread, what the step
    costs whatever else runs on the cores (with two, waiting threads spin and add to it)."""
    gflop: float
    """Convolution and matrix FLOPs of the step, forward and backward (torch's count):
    independent of the machine and its load, so sizes compare by it when the cores are busy."""


def step_seconds(stage: CycleGanPretrain, domains: Domains, steps: int) -> StepTime:
    """Median wall seconds of ``steps`` training steps, after a warm-up step whose FLOPs count."""
    gan = stage.cyclegan
    optimisers = [
        torch.optim.AdamW(list(params), lr=2e-4, betas=ADAM_BETAS, weight_decay=0.0)
        for params in (gan.generator_parameters(), gan.discriminator_parameters())
    ]
    judges = nn.ModuleList([gan.d_opt, gan.d_sar])
    makers = nn.ModuleList([gan.sar_to_opt, gan.opt_to_sar])

    def step() -> None:
        _set_trainable(judges, False)  # what toggle_optimizer does in the Lightning step
        loss_g, _, fakes = stage.generator_objective(domains)
        optimisers[0].zero_grad(set_to_none=True)
        loss_g.backward()
        optimisers[0].step()
        _set_trainable(judges, True)
        _set_trainable(makers, False)
        loss_d = stage.discriminator_objective(domains, fakes)
        optimisers[1].zero_grad(set_to_none=True)
        loss_d.backward()
        optimisers[1].step()
        _set_trainable(makers, True)

    with FlopCounterMode(display=False) as counter:
        step()
    walls, cpus = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    flops = counter.get_total_flops() / 1e9
    return StepTime(statistics.median(walls), statistics.median(cpus), flops)


def _load() -> str:
    """The 1-minute load average (other processes share the cores), or n/a."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def _tiles(n: int, memory: torch.memory_format) -> Tensor:
    return torch.randn(n, 3, TILE, TILE).contiguous(memory_format=memory)


def measure(
    sizes: dict[str, Any], pretrain_batch: int, steps: int, channels_last: bool
) -> tuple[float, float, StepTime, StepTime]:
    """Generator and discriminator parameters (M) and the step times of both runs."""
    torch.manual_seed(0)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    stage = CycleGanPretrain(**sizes, class_names=["a", "b"], scheduler="none")
    stage.model.to(memory_format=memory)
    gan: CycleGAN = stage.cyclegan
    unpaired = Domains(_tiles(pretrain_batch, memory), _tiles(pretrain_batch, memory))
    paired = Domains(
        _tiles(ADAPT_BATCH, memory),
        _tiles(ADAPT_BATCH, memory),
        torch.ones(ADAPT_BATCH, dtype=torch.bool),
    )
    return (
        gan.spec["generator"]["parameters"] / 1e6,
        gan.spec["discriminator"]["parameters"] / 1e6,
        step_seconds(stage, unpaired, steps),
        step_seconds(stage, paired, steps),
    )


def main() -> None:
    """Print one line per generator size: parameters, s/step and s/epoch of both runs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", choices=["resnet", "unet"], default="resnet")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--disc-width", type=int, default=64)
    parser.add_argument("--disc-layers", type=int, default=3)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    settings = profile(args.profile)
    batch = int(settings["batch_size"])
    pretrain_steps = int(settings["translation_pretrain_batches"])
    adapt_steps = math.ceil(round(LABELLED * (1 - VAL_FRACTION)) / ADAPT_BATCH)
    channels_last = bool(settings.get("channels_last", False))
    print(
        f"threads={threads} profile={args.profile} tile={TILE} channels_last={channels_last} "
        f"discriminator={args.disc_width}x{args.disc_layers} layers; cycit_pretrain: batch "
        f"{batch}, {pretrain_steps} steps/epoch; cycit: batch {ADAPT_BATCH}, {adapt_steps} "
        f"steps/epoch; medians of {args.steps} steps; load average {_load()}"
    )
    print(
        "per step: GFLOP (forward + backward, torch's count), median wall s (under the load "
        "above) and CPU s of this process; per epoch: wall s/step x steps"
    )
    print(
        f"{'generator':<16} {'G params':>9} {'D params':>9} {'pre GFLOP':>10} "
        f"{'pre wall/cpu s':>15} {'pre s/epoch':>12} {'cycit GFLOP':>12} "
        f"{'cycit wall/cpu s':>17} {'cycit s/epoch':>14}"
    )
    for width in args.widths:
        sizes = {"generator": args.generator, "width": width, "blocks": args.blocks,
                 "disc_width": args.disc_width, "disc_layers": args.disc_layers}  # fmt: skip
        g_params, d_params, pre, adapt = measure(sizes, batch, args.steps, channels_last)
        name = f"{args.generator} w{width}"
        if args.generator == "resnet":
            name += f" b{args.blocks}"
        print(
            f"{name:<16} {g_params:>8.3f}M {d_params:>8.3f}M {pre.gflop:>10.0f} "
            f"{pre.wall:>7.2f} / {pre.cpu:>5.2f} {pre.wall * pretrain_steps:>12.0f} "
            f"{adapt.gflop:>12.0f} {adapt.wall:>9.2f} / {adapt.cpu:>5.2f} "
            f"{adapt.wall * adapt_steps:>14.0f}",
            flush=True,
        )
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
