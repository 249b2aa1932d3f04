"""Cost of IRM relative to plain distillation in one F2 training step (prints ratios).

IRM adds two softmax reductions and (under DDP) two scalar all-reduces per step; this script
times the F2 loss with ``irm: none``, ``batch`` and ``sample`` on random tensors, with the
target network's forward/backward included, and prints each time relative to ``none``.

    python benchmarks/irm_overhead.py --backbone googlenet --batch 32 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import torch

from cloudxfer.irm import modality_weights
from cloudxfer.losses import distillation_loss, teacher_targets
from cloudxfer.models import SceneClassifier


def step_time(
    model: SceneClassifier, batch: dict[str, torch.Tensor], irm: str, repeats: int
) -> float:
    """Median seconds of one F2 step (forward, IRM-weighted loss, backward)."""
    classes = model.head.out_features
    teachers = {
        k: torch.randn(batch["image_opt"].shape[0], classes) for k in ("opt", "sar", "source")
    }
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits = model(batch)
        terms = {
            k: distillation_loss(logits, teacher_targets(v, "hard")) for k, v in teachers.items()
        }
        if irm == "none":
            rho_opt = rho_sar = torch.ones(())
        else:
            rho_opt, rho_sar = modality_weights(teachers["opt"], teachers["sar"], irm == "sample")
        loss = (rho_opt * terms["opt"] + rho_sar * terms["sar"] + terms["source"]).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="googlenet")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SceneClassifier(args.backbone, ["image_opt", "image_sar"], args.classes)
    batch = {k: torch.randn(args.batch, 3, 64, 64) for k in ("image_opt", "image_sar")}
    step_time(model, batch, "none", 1)  # warm-up
    base = step_time(model, batch, "none", args.repeats)
    print(
        f"backbone={args.backbone} batch={args.batch} device=cpu threads={torch.get_num_threads()}"
    )
    print(f"irm=none    {base * 1000:8.1f} ms/step  ratio 1.000")
    for mode in ("batch", "sample"):
        t = step_time(model, batch, mode, args.repeats)
        print(f"irm={mode:<7} {t * 1000:8.1f} ms/step  ratio {t / base:.3f}")


if __name__ == "__main__":
    main()
