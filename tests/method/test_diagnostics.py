"""The behavioural check of the semantic noise: the nuisance-reliance measure and claim 3 on synthetic tokens."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from qfm_iqm.method import train
from qfm_iqm.method.model import QualityModel


def test_the_nuisance_reliance_measure_sees_a_model_that_reads_the_nuisance_block() -> None:
    from qfm_iqm.method.diagnostics import farthest_matched, nuisance_reliance, nuisance_tokens

    x, y, content = nuisance_tokens(0, images=200)
    partners = farthest_matched(y, content)
    assert np.all(np.abs(y[partners] - y) < 0.05) and np.all(partners != np.arange(len(y)))
    blind = x.copy()
    blind[..., x.shape[-1] // 2:] = 0  # a model that never saw the nuisance block cannot rely on it
    cfg = train.TrainConfig(epochs=20, lr=3e-3, weight_decay=0.0, batch_size=32, loss="smooth_l1", seed=0)
    reliance = {}
    for name, data in [("reads", x), ("blind", blind)]:
        model = QualityModel(x.shape[-1], head="mlp", hidden=16, dropout=0.0)
        train.train(model, data.mean(2), y, cfg)
        reliance[name] = nuisance_reliance(model, nuisance_tokens(1, images=200, test=True)[0].mean(2), 8)
    assert reliance["reads"] > 0.1 and reliance["blind"] < 0.3 * reliance["reads"], reliance


@pytest.mark.slow  # trains 20 small models per head
@pytest.mark.parametrize("head", ["mlp", "decoder"])
def test_the_default_matching_lowers_the_reliance_on_a_confounder_without_costing_accuracy(head: str) -> None:
    """Claim 3 on synthetic tokens whose content correlates with quality on the training images only: with the
    configured matching settings (config/config.yaml) and the bench's smooth-L1 quality loss, matching lowers the
    reliance on content on at least 8 of 10 draws and does not lower the median test SRCC. (With the pipeline's
    smooth-L1 + PLCC loss the effect is much weaker; docs/results.md "The corrected loss" gives the numbers, and
    the claims table tests the run's own loss.)"""
    from qfm_iqm.method.diagnostics import nuisance_experiment
    from qfm_iqm.settings import load_config_file, validate

    config = load_config_file(REPO / "config/config.yaml")
    validate(config)  # the schema's defaults filled in (noise_form, sens_target), as the workflow reads it
    matching = config["student"]["matching"]
    runs = [nuisance_experiment(seed, head, matching, "smooth_l1", regime="confounded") for seed in range(10)]
    ratios = [r["matching"]["reliance"] / r["baseline"]["reliance"] for r in runs]
    gains = [r["matching"]["srcc"] - r["baseline"]["srcc"] for r in runs]
    assert sum(r < 1 for r in ratios) >= 8 and np.median(gains) >= 0, (ratios, gains)
