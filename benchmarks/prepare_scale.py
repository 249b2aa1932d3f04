"""Time, peak memory and disk of ``cloudxfer prepare sen12ms``, extrapolated to the full release.

Forges SEN12MS in the release's format at its real patch size (256 px cut at a 128-px stride,
13-band S2, 2-band S1, 4-band LC, the toolbox's label pickle and split lists; see
tests/official_files.py) at two sizes, runs ``python -m cloudxfer prepare sen12ms`` on each in
a fresh process (``os.wait4``: peak resident set size and wall time; the packed stores in a
fresh folder) for centre and grid tiling, then fits time, memory and disk per patch between
the two sizes and extrapolates to the paper's 16,219 pairs and the release's 180,662. It also
times reading a label pickle of the release's 180,662 entries through the restricted
unpickler.

    python -m benchmarks.prepare_scale --out /tmp/prepare_scale
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.official_files import write_sen12ms_release

RELEASE = 180_662
PAPER = 16_219


ANON: list[float] = [0.0]
"""Peak anonymous memory (MiB) of the last :func:`_run`, sampled every 50 ms."""


def _anon_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _run(args: list[str], env: dict[str, str], log: Path | None = None) -> tuple[float, float]:
    """Run a command in a fresh process: wall seconds and peak RSS in MiB (output to ``log``).

    Peak RSS (``os.wait4``) counts the pages of memory-mapped files the process touched (the
    packed store it writes and reads), which the kernel drops under pressure; :data:`ANON`
    gets the peak of its anonymous memory, which it cannot.
    """
    start = time.perf_counter()
    peak = 0.0
    with open(log or os.devnull, "w") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _anon_mib(process.pid))
            time.sleep(0.05)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit status {status}); see {log}")
    ANON[0] = peak
    return wall, usage.ru_maxrss / 1024


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    """Forge, prepare, measure, extrapolate; print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenes", type=int, nargs=2, default=[3, 6], help="spring scenes")
    parser.add_argument("--per-side", type=int, default=7, help="patches a scene side")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    baseline, base_rss = _run([sys.executable, "-c", "import cloudxfer.prepare.sen12ms, "
                               "datamodules.paired, cloudxfer.runtime"], env)  # fmt: skip
    print(f"FIGURE import_seconds {baseline:.1f} import_peak_rss_mib {base_rss:.0f} "
          f"import_peak_anon_mib {ANON[0]:.0f}")  # fmt: skip
    results: dict[tuple[str, int], tuple[float, float, int]] = {}
    anon: dict[tuple[str, int], float] = {}
    patches: dict[int, int] = {}
    for scenes in args.scenes:
        base = args.out / f"release{scenes}"
        release = write_sen12ms_release(base, scenes=scenes, per_side=args.per_side, patch=256)
        patches[scenes] = len(release.patches)
        for tiling in ("center", "grid"):
            store = base / f"store_{tiling}"
            wall, rss = _run(
                [sys.executable, "-m", "cloudxfer", "prepare", "sen12ms", "--root",
                 str(release.root), "--labels", str(release.labels), "--splits",
                 str(release.splits), "--out", str(base / f"{tiling}.yaml"), "--tiling", tiling,
                 "--labelled-per-class", "2", "--drop-small-classes", "--store-dir", str(store)],
                {**env, "CLOUDXFER_STORE_DIR": str(store)},
                base / f"{tiling}.log",
            )  # fmt: skip
            results[(tiling, scenes)] = (wall, rss, _size(store))
            anon[(tiling, scenes)] = ANON[0]
            print(f"FIGURE prepare_{tiling}_{patches[scenes]}_patches seconds {wall:.1f} "
                  f"peak_rss_mib {rss:.0f} peak_anon_mib {ANON[0]:.0f} "
                  f"store_mib {_size(store) / 2**20:.1f}")  # fmt: skip
        print(
            f"FIGURE release_{patches[scenes]}_patches_disk_mib {_size(release.root) / 2**20:.0f}"
        )
    small, large = args.scenes
    dn = patches[large] - patches[small]
    for tiling in ("center", "grid"):
        (t1, _, d1), (t2, _, d2) = results[(tiling, small)], results[(tiling, large)]
        m1, m2 = anon[(tiling, small)], anon[(tiling, large)]
        per_time, per_rss, per_disk = (t2 - t1) / dn, (m2 - m1) / dn, (d2 - d1) / dn
        for n in (PAPER, RELEASE):
            more = n - patches[large]
            print(f"EXTRAPOLATED {tiling} {n:,} patches: {t2 + per_time * more:,.0f} s, "
                  f"peak anonymous memory {m2 + max(per_rss, 0) * more:,.0f} MiB, store "
                  f"{per_disk * n / 2**30:.1f} GiB "
                  f"(per patch {per_time * 1000:.1f} ms, {per_rss * 1024:.1f} KiB anonymous, "
                  f"{per_disk / 1024:.0f} KiB)")  # fmt: skip
    labels = args.out / "IGBP_probability_labels.pkl"
    rng = np.random.default_rng(0)
    entries = {f"ROIs1158_spring_s2_{i // 1000}_p{i % 1000}.tif": rng.dirichlet(np.ones(17))
               for i in range(RELEASE)}  # fmt: skip
    labels.write_bytes(pickle.dumps(entries, protocol=2).replace(b"numpy._core", b"numpy.core"))
    log = args.out / "labels.log"
    script = ("import time\nfrom datamodules.sen12ms_toolbox import read_probability_labels\n"
              f"t = time.perf_counter()\nread_probability_labels({str(labels)!r})\n"
              "print(time.perf_counter() - t)")  # fmt: skip
    _, rss = _run([sys.executable, "-c", script], env, log)
    seconds = float(log.read_text().split()[-1])
    print(f"FIGURE label_pickle_{RELEASE}_entries seconds {seconds:.1f} peak_rss_mib {rss:.0f} "
          f"peak_anon_mib {ANON[0]:.0f} "
          f"file_mib {labels.stat().st_size / 2**20:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
