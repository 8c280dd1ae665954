"""Sensitivity to matched semantic noise: the prediction shift grows with eps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import toy_data

from qfm_iqm.method.model import QualityModel


def test_sensitivity_measures_the_prediction_shift_under_matched_noise() -> None:
    from qfm_iqm.evaluation.sensitivity import sensitivity

    x, y = toy_data(40)
    model = QualityModel(x.shape[-1], head="linear", dropout=0.0)
    model.fit_normaliser(torch.from_numpy(x))
    partners = np.roll(np.arange(len(x)), 1)
    zero = sensitivity(model, x, y, partners, eps=0.0, large_gap=0.2)
    assert zero["mean_abs_shift"] == 0 and zero["srcc_noisy"] == zero["srcc_clean"]
    small, large = (sensitivity(model, x, y, partners, eps=e, large_gap=0.2) for e in (0.3, 0.6))
    assert small["mean_abs_shift"] > 0 and large["mean_abs_shift"] == pytest.approx(2 * small["mean_abs_shift"], rel=1e-4)
    assert 0 <= small["nn_fraction_large_gap"] <= 1 and small["relative_shift"] > 0
