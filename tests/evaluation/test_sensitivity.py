"""Sensitivity to matched semantic noise: the prediction shift grows with eps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import toy_data

from qfm_iqm.method.model import QualityModel


def test_sensitivity_measures_the_prediction_shift_under_matched_noise() -> None:
    from qfm_iqm.evaluation.sensitivity import ADDITIVE, sensitivity

    x, y = toy_data(40)
    model = QualityModel(x.shape[-1], head="linear", dropout=0.0, hidden=512)
    model.fit_normaliser(torch.from_numpy(x))
    partners = np.roll(np.arange(len(x)), 1)
    zero = sensitivity(model, x, y, partners, eps=0.0, large_gap=0.2, feats=None, form=ADDITIVE)
    assert zero["mean_abs_shift"] == 0 and zero["srcc_noisy"] == zero["srcc_clean"]
    small, large = (sensitivity(model, x, y, partners, eps=e, large_gap=0.2, feats=None, form=ADDITIVE)
                    for e in (0.3, 0.6))
    assert small["mean_abs_shift"] > 0 and large["mean_abs_shift"] == pytest.approx(2 * small["mean_abs_shift"], rel=1e-4)
    assert 0 <= small["nn_fraction_large_gap"] <= 1 and small["relative_shift"] > 0


def test_the_training_probe_uses_the_students_noise_form() -> None:
    from qfm_iqm.evaluation.sensitivity import ADDITIVE, sensitivity

    x, y = toy_data(40)
    model = QualityModel(x.shape[-1], head="linear", dropout=0.0, hidden=512)
    model.fit_normaliser(torch.from_numpy(x))
    partners = np.roll(np.arange(len(x)), 1)
    add, mix = (sensitivity(model, x, y, partners, 0.5, 0.2, None, form=form) for form in ("add", "mix"))
    assert add["form"] == "add" and mix["form"] == "mix" and add["mean_abs_shift"] != mix["mean_abs_shift"]
    assert ADDITIVE == "add"  # the paper's probe
    with pytest.raises(KeyError, match="unknown noise form"):
        sensitivity(model, x, y, partners, 0.5, 0.2, None, form="blend")


def test_split_evaluation_writes_both_probes_per_model() -> None:
    """One row per model and probe: the additive probe at the evaluation's eps for every model, the training probe at
    each model's own eps and form (none for a model without an entry)."""
    from qfm_iqm.evaluation.evaluate import split_evaluation
    from qfm_iqm.features.cache import FeatureSet

    x, y = toy_data(60)
    ids = np.array([f"i{k}" for k in range(60)])
    rows = pd.DataFrame({"image_id": ids, "score": y, "score_raw": y, "ref_id": ids, "distortion": "", "level": 0})
    models = {}
    for name in ("teacher", "full", "baseline"):
        models[name] = QualityModel(x.shape[-1], head="linear", dropout=0.0, hidden=512)
        models[name].fit_normaliser(torch.from_numpy(x))
    noise = {"eps": 0.3, "large_gap": 0.2, "tau": 0.1, "k_fallback": 3,
             "training": {"teacher": {"eps": 0.5, "form": "mix"}, "full": {"eps": 0.5, "form": "mix"}}}
    part = slice(0, 40), slice(40, 60)
    train = FeatureSet(ids[part[0]], x[part[0]], ["final_mean"], [x.shape[-1]])
    test = FeatureSet(ids[part[1]], x[part[1]], ["final_mean"], [x.shape[-1]])
    _, _, sens = split_evaluation(0, rows.iloc[part[0]], train, rows.iloc[part[1]].reset_index(drop=True), test, None,
                                  models, [1.0], noise)
    assert list(zip(sens["model"], sens["probe"], sens["eps"], sens["form"], strict=True)) == [
        ("teacher", "additive", 0.3, "add"), ("teacher", "training", 0.5, "mix"), ("full", "additive", 0.3, "add"),
        ("full", "training", 0.5, "mix"), ("baseline", "additive", 0.3, "add")]
    assert (sens["relative_shift"] > 0).all() and (sens["split"] == 0).all()
