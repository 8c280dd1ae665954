"""Stages of ``workflow/rules/deploy.smk``: the deployable bundle and the shipped model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace as NS

import pandas as pd

from qfm_iqm.data.meta import read_meta
from qfm_iqm.pipeline.stages.base import stage

log = logging.getLogger(__name__)


@stage
def export_model(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.deploy import bundle

    backbone, weights_file = params.backbone, getattr(input, "weights", None)
    info = bundle.export(output.bundle, name=params.name, model=input.model, backbone=backbone["name"],
                         precision=backbone["precision"], weights=backbone["weights"],
                         state=bundle.backbone_state(backbone["name"], backbone["weights"], weights_file),
                         weights_file=weights_file, crops=params.crops, meta=read_meta(input.meta), dataset={
                             "name": params.name, **json.loads(Path(input.licence).read_text()),
                             "citation": params.credit["citation"]},
                         settings=params.settings, provenance=json.loads(Path(input.provenance).read_text()),
                         summary=pd.read_csv(input.summary), notice=params.credit["notice"] or None,
                         published=params.published)
    log.info("bundle %s: %s", output.bundle, info["files"])


@stage
def ship_model(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.deploy.bundle import copy_bundle

    info = copy_bundle(input.bundle, output.shipped)
    log.info("shipped %s as %s: %s", input.bundle, output.shipped, info["files"])
