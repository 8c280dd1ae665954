"""Model bundles: what the workflow exports, strict loading (files, digests, backbone weights), bundles from
before the digest of bundle.json."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from qfm_iqm import load_model
from qfm_iqm.deploy import bundle
from qfm_iqm.deploy.bundle import CONTENT_SHA256, INFO, Bundle
from qfm_iqm.io import InputError, sha256sum


@pytest.mark.slow  # the tiny workflow run makes the bundle
def test_the_workflow_bundles_the_full_student_trained_on_every_image(tiny_run: Path, workflow_bundle: Path) -> None:
    b = Bundle.open(workflow_bundle)
    assert sorted(p.name for p in workflow_bundle.glob("[!.]*")) == ["MODEL.md", "bundle.json", "model.pt"]
    assert sha256sum(workflow_bundle / "model.pt") == sha256sum(tiny_run / "results/tiny/splitall/students/full.pt")
    assert json.loads((tiny_run / "results/tiny/splitall/students/full.json").read_text())["labelled_images"] == \
        len(pd.read_csv(tiny_run / "data/tiny/meta.csv")) == b.info["dataset"]["images"]
    assert b.info["backbone"]["weights"] == "package" and len(b.info["backbone"]["sha256"]) == 64
    assert b.info["crops"] == {"n": 2, "size": 64, "seed": 0, "global_view": False, "input": "crops", "max_side": 1024,
                               "flip": False, "stages": "all", "pooling": "mean_std"}  # the schema's defaults filled in
    assert b.info["settings"]["student"]["arch"]["hidden"] == 16
    assert "L_sens = |pred(noisy) - pred(clean)| with gradients through both predictions, weight 0.5." in \
        (workflow_bundle / "MODEL.md").read_text()  # the card says which loss trained the model
    summary = pd.read_csv(tiny_run / "results/tiny/summary.csv").set_index("model")
    metrics = {m["model"]: m for m in b.info["metrics"]}
    assert metrics["full"]["srcc_median"] == pytest.approx(summary.loc["full", "srcc_median"])
    card = b.card()
    assert f"`{sha256sum(workflow_bundle / 'model.pt')}`" in card and "## Limits" in card and "## Intended use" in card


def test_other_backbone_weights_are_refused_naming_both_digests(bundle_copy: Path) -> None:
    info = json.loads((bundle_copy / "bundle.json").read_text())
    recorded, info["backbone"]["sha256"] = info["backbone"]["sha256"], "0" * 64
    (bundle_copy / "bundle.json").write_text(json.dumps(bundle.seal(info)))  # a consistent bundle.json
    with pytest.raises(InputError, match=f"SHA-256 {recorded}, but the model was trained on weights with SHA-256 "
                                         f"{'0' * 64}"):
        load_model(bundle_copy)


def test_a_missing_or_altered_bundle_file_is_named(bundle_copy: Path, tiny_bundle: Path) -> None:
    (bundle_copy / "MODEL.md").write_text("edited")
    with pytest.raises(InputError, match="MODEL.md: SHA-256 .* does not match"):
        Bundle.open(bundle_copy)
    shutil.copyfile(tiny_bundle / "MODEL.md", bundle_copy / "MODEL.md")
    (bundle_copy / "model.pt").unlink()
    with pytest.raises(InputError, match="bundle file model.pt is missing"):
        Bundle.open(bundle_copy)
    (bundle_copy / "bundle.json").unlink()
    with pytest.raises(InputError, match="not a model bundle"):
        Bundle.open(bundle_copy)


def test_a_random_backbone_makes_no_bundle() -> None:
    with pytest.raises(InputError, match="backbone.weights: 'none'"):
        bundle.weights_kind("none")


def test_a_bundle_from_before_the_digest_loads_with_a_warning(livec_copy: Path, caplog) -> None:
    info = json.loads((livec_copy / INFO).read_text())
    del info[CONTENT_SHA256]
    (livec_copy / INFO).write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING):
        assert Bundle.open(livec_copy).info["scale"] == info["scale"]
    assert f"{livec_copy / INFO} has no {CONTENT_SHA256}" in caplog.text
