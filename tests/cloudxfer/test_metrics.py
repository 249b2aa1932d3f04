import csv
import json
import math
import warnings

import pytest
import torch

from cloudxfer.metrics import SceneMetrics, write_metrics_json, write_predictions_csv


def _by_hand(conf: list[list[int]]) -> tuple[float, float, float]:
    n = sum(map(sum, conf))
    k = len(conf)
    diag = sum(conf[i][i] for i in range(k))
    oa = diag / n
    recalls = [conf[i][i] / sum(conf[i]) for i in range(k) if sum(conf[i]) > 0]
    aa = sum(recalls) / len(recalls)
    rows = [sum(conf[i]) for i in range(k)]
    cols = [sum(conf[i][j] for i in range(k)) for j in range(k)]
    pe = sum(r * c for r, c in zip(rows, cols, strict=True)) / n**2
    return oa, aa, (oa - pe) / (1 - pe)


def _pairs(conf: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    target, preds = [], []
    for i, row in enumerate(conf):
        for j, count in enumerate(row):
            target += [i] * count
            preds += [j] * count
    return torch.tensor(preds), torch.tensor(target)


def test_metrics_match_hand_computed_confusion_matrix() -> None:
    conf = [[5, 1, 0], [2, 3, 1], [0, 0, 4]]  # rows = true class
    preds, target = _pairs(conf)
    metrics = SceneMetrics(3)
    metrics.update(preds, target, torch.zeros(len(preds)))
    values = metrics.compute()
    oa, aa, kappa = _by_hand(conf)
    assert values["oa"] == pytest.approx(oa, rel=1e-5)
    assert values["aa"] == pytest.approx(aa, rel=1e-5)
    assert values["kappa"] == pytest.approx(kappa, rel=1e-5)
    assert values["n"] == len(preds) and values["n_clear"] == len(preds) and values["n_cloudy"] == 0
    assert math.isnan(values["oa_cloudy"])


def test_cloudy_and_clear_subsets() -> None:
    conf_cloudy = [[2, 2, 0], [1, 1, 0], [0, 1, 0]]
    conf_clear = [[4, 0, 0], [0, 3, 1], [0, 0, 2]]
    p1, t1 = _pairs(conf_cloudy)
    p2, t2 = _pairs(conf_clear)
    fractions = torch.cat([torch.full((len(p1),), 0.5), torch.zeros(len(p2))])
    unknown = torch.tensor([float("nan")])
    metrics = SceneMetrics(3)
    metrics.update(
        torch.cat([p1, p2, torch.tensor([0])]),
        torch.cat([t1, t2, torch.tensor([0])]),
        torch.cat([fractions, unknown]),
    )
    values = metrics.compute()
    for suffix, conf in (("_cloudy", conf_cloudy), ("_clear", conf_clear)):
        oa, aa, kappa = _by_hand(conf)
        assert values[f"oa{suffix}"] == pytest.approx(oa, rel=1e-5)
        assert values[f"aa{suffix}"] == pytest.approx(aa, rel=1e-5)
        assert values[f"kappa{suffix}"] == pytest.approx(kappa, rel=1e-5)
    assert values["n"] == len(p1) + len(p2) + 1  # the unknown tile counts only overall
    assert values["n_cloudy"] == len(p1) and values["n_clear"] == len(p2)


def test_aa_ignores_classes_absent_from_targets() -> None:
    # Class 2 is predicted once but never true: AA is the mean recall of classes 0 and 1.
    metrics = SceneMetrics(3)
    metrics.update(torch.tensor([0, 2, 1, 1]), torch.tensor([0, 0, 1, 1]), torch.zeros(4))
    assert metrics.compute()["aa"] == pytest.approx((0.5 + 1.0) / 2)


def test_output_files(tmp_path) -> None:
    path = write_metrics_json(
        tmp_path / "m.json", {"oa": 0.5, "aa": math.nan, "n": 4.0}, stage="target"
    )
    data = json.loads(path.read_text())
    assert data == {"oa": 0.5, "aa": None, "n": 4, "stage": "target"}
    rows = [
        {"id": "b", "label": 1, "pred": 0, "cloud_fraction": 0.2},
        {"id": "a", "label": 0, "pred": 0, "cloud_fraction": 0.0},
        {"id": "b", "label": 1, "pred": 0, "cloud_fraction": 0.2},  # DDP padding duplicate
    ]
    csv_path = write_predictions_csv(tmp_path / "p.csv", rows)
    read = list(csv.DictReader(csv_path.open()))
    assert [r["id"] for r in read] == ["a", "b"]
    assert {"id", "label", "pred", "cloud_fraction"} <= set(read[0])


def test_tiles_without_a_label_are_not_scored() -> None:
    metrics = SceneMetrics(num_classes=3)
    preds = torch.tensor([0, 1, 2, 0])
    target = torch.tensor([0, 1, -1, -1])  # the last two: the unlabelled pool
    metrics.update(preds, target, torch.tensor([0.5, 0.0, 0.5, 0.0]))
    out = metrics.compute()
    assert out["n"] == 2 and out["n_cloudy"] == 1 and out["n_clear"] == 1
    assert out["oa"] == pytest.approx(1.0)


def test_metrics_of_no_batch_are_zero_tiles_without_a_warning() -> None:
    metrics = SceneMetrics(num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchmetrics' compute-before-update warning fails
        values = metrics.compute()
    assert values["n"] == 0 and values["n_cloudy"] == 0 and math.isnan(values["oa"])
