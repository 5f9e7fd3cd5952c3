"""The search study's rows: the full grid's pair, each search's choice, marked when it differs."""

from __future__ import annotations

import dataclasses

import torch

from odin_monitor import calibrate
from odin_monitor.bench.search_study import format_rows, study
from odin_monitor.models import CIFAR_RESNET_NORMALIZATION
from tests.helpers import make_smooth_net


def test_study_rows_match_calibrate_and_mark_a_differing_choice():
    g = torch.Generator().manual_seed(0)
    sets = {"id": torch.rand(300, 3, 6, 6, generator=g) * 0.3 + 0.35,
            "ood": torch.rand(300, 3, 6, 6, generator=g)}  # fmt: skip
    temps, eps = (1.0, 10.0, 1000.0), tuple(round(0.025 * j, 12) for j in range(9))
    net = make_smooth_net(seed=2).eval()
    (row,) = study(net, sets, ["id"], ["ood"], temps, eps, batch_size=100)
    full = calibrate(net, sets["id"], sets["ood"], normalization=CIFAR_RESNET_NORMALIZATION,
                     temperatures=temps, epsilons=eps, search="full", batch_size=100)  # fmt: skip
    assert row.full == full.chosen
    assert row.full_fpr == full.record.metrics["fpr_at_tpr"]
    assert row.coarse_to_fine == row.full and 0 < row.finished <= 27
    text = format_rows([row], 27)
    assert "**differs**" not in text and f"{row.finished}/27" in text
    moved = dataclasses.replace(row, coarse_to_fine=(1.0, 0.0))
    assert format_rows([moved], 27).count("**differs**") == 1
