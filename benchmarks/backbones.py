"""Training and inference throughput (img/s) of candidate backbones on this machine.

Plain PyTorch (no Lightning), early-fusion input 6 x 64 x 64, SGD step included, with and
without channels-last; what the profiles' backbone choices rest on.

    python -m benchmarks.backbones --threads 2 --batch 32
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cloudxfer.models import SceneClassifier
from cloudxfer.runtime import configure_threads

INPUTS = ["image_opt", "image_sar"]


def throughput(backbone: str, batch: int, channels_last: bool, steps: int) -> tuple[float, float]:
    """(train img/s, inference img/s), best of ``steps`` timed iterations after warm-up."""
    torch.manual_seed(0)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = SceneClassifier(backbone, INPUTS, 10).to(memory_format=memory)
    data = {k: torch.randn(batch, 3, 64, 64).contiguous(memory_format=memory) for k in INPUTS}
    labels = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train = []
    model.train()
    for _ in range(steps + 2):
        start = time.perf_counter()
        loss = F.cross_entropy(model(data), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train.append(time.perf_counter() - start)
    infer = []
    model.eval()
    with torch.inference_mode():
        for _ in range(steps + 2):
            start = time.perf_counter()
            model(data)
            infer.append(time.perf_counter() - start)
    return batch / min(train[2:]), batch / min(infer[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbones", nargs="+", default=["googlenet", "resnet18", "resnet10"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    print(f"threads={threads} batch={args.batch} input=6x64x64 (best of {args.steps} steps)")
    print(f"{'backbone':<12} {'layout':<14} {'train img/s':>12} {'infer img/s':>12}")
    for name in args.backbones:
        for channels_last in (False, True):
            train, infer = throughput(name, args.batch, channels_last, args.steps)
            layout = "channels-last" if channels_last else "contiguous"
            print(f"{name:<12} {layout:<14} {train:>12.0f} {infer:>12.0f}")


if __name__ == "__main__":
    main()
