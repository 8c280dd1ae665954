"""Seed ensembles (``evaluation.seeds``): K seeds trained alike, scored and probed by their mean."""

from __future__ import annotations

import numpy as np
import torch
from conftest import TINY_STUDENT

from qfm_iqm.evaluation.sensitivity import sensitivity
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.method.checkpoint import load_model, save_model
from qfm_iqm.method.ensemble import SeedEnsemble
from qfm_iqm.method.train import fit, fit_seeds, predict
from qfm_iqm.settings import loss_settings


def _data(n: int = 24) -> tuple[FeatureSet, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2, 12)).astype(np.float32)
    return FeatureSet(np.array([str(i) for i in range(n)]), x, ["final_mean"], [12]), rng.uniform(size=n)


def test_k_seeds_train_k_models_whose_mean_is_the_prediction_and_that_survive_a_checkpoint(tmp_path) -> None:
    feats, y = _data()
    cfg = loss_settings(TINY_STUDENT)
    single, _ = fit(TINY_STUDENT["arch"], feats, y, cfg)
    one, _ = fit_seeds(TINY_STUDENT["arch"], feats, y, cfg, seeds=1)
    np.testing.assert_array_equal(predict(one, feats.features), predict(single, feats.features))  # K = 1: as before
    ensemble, log = fit_seeds(TINY_STUDENT["arch"], feats, y, cfg, seeds=3)
    assert isinstance(ensemble, SeedEnsemble) and len(ensemble.members) == 3
    assert sorted(log["seed"].unique()) == [0, 1, 2] and len(log) == 3 * cfg["epochs"]
    members = [predict(m, feats.features) for m in ensemble.members]
    np.testing.assert_array_equal(members[0], predict(single, feats.features))  # member 0 is the seed-0 model
    assert not np.allclose(members[0], members[1])  # other seeds train differently
    np.testing.assert_allclose(predict(ensemble, feats.features), np.mean(members, 0), rtol=1e-6)
    save_model(ensemble, tmp_path / "e.pt")
    loaded = load_model(tmp_path / "e.pt")
    assert isinstance(loaded, SeedEnsemble) and loaded.spec["head"] == "mlp"
    np.testing.assert_allclose(predict(loaded, feats.features), predict(ensemble, feats.features), rtol=1e-6)


def test_the_sensitivity_probe_of_an_ensemble_is_that_of_its_mean_prediction() -> None:
    feats, y = _data()
    ensemble, _ = fit_seeds(TINY_STUDENT["arch"], feats, y, loss_settings(TINY_STUDENT), seeds=2)
    partners = np.roll(np.arange(len(y)), 1)
    result = sensitivity(ensemble, feats.features, y, partners, 0.3, 0.2, None, "add")
    x = torch.from_numpy(feats.features)
    with torch.inference_mode():
        clean = torch.stack([m(x) for m in ensemble.members]).mean(0).mean(1)
        noisy = torch.stack([m(x, x[partners], 0.3, "add") for m in ensemble.members]).mean(0).mean(1)
    assert np.isclose(result["mean_abs_shift"], float((noisy - clean).abs().mean()), rtol=1e-5)
