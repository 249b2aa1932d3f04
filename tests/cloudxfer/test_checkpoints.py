"""Checkpoint metadata checks: stage, method, class scheme, modality."""

from __future__ import annotations

import pytest

from cloudxfer.checkpoints import CheckpointError, validate_metadata

META = {"stage": "auxiliary", "modality": "opt", "class_names": ["a", "b"]}


@pytest.mark.parametrize("method", [None, "aux_opt"])
def test_the_chains_own_checkpoints_pass_their_role(method: str | None) -> None:
    meta = {**META, "method": method}
    validate_metadata(meta, "x.ckpt", {"auxiliary"}, ["a", "b"], "opt", {"aux_opt", "aux_sar"})


def test_a_comparison_rows_checkpoint_is_refused_in_a_chain_role() -> None:
    meta = {**META, "method": "kd_s"}
    with pytest.raises(CheckpointError, match=r"x.ckpt: checkpoint is from method 'kd_s'"):
        validate_metadata(meta, "x.ckpt", {"auxiliary"}, ["a", "b"], "opt", {"aux_opt"})
    validate_metadata(meta, "x.ckpt", {"auxiliary"})  # no role named: the method is not checked
