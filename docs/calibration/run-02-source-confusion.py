# Source confusion of run 02: PYTHONPATH=. python docs/calibration/run-02-source-confusion.py /tmp/cal/s2
# The calibration script's own source training (8 epochs, seed 0, 2 threads), confusion printed.
import sys
from pathlib import Path

import torch

from benchmarks.calibrate_simulator import (
    confusion,
    load_source,
    predict,
    print_confusion,
    train_model,
)

torch.set_num_threads(2)
root = Path(sys.argv[1])
src = load_source(root, 0)
x, y = src["train"]
vx, vy = src["val"]
names = sorted(p.name for p in root.iterdir() if p.is_dir())
m = train_model(x, y, len(names), 8, seed=0, batch_size=32, lr=2e-3)
p = predict(m, vx)
print("val OA", float((p == vy).float().mean()))
print_confusion("source", confusion(p, vy, len(names)), names)
