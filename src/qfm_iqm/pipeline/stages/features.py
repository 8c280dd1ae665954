"""Stages of ``workflow/rules/features.smk``: the feature and activation caches."""

from __future__ import annotations

from types import SimpleNamespace as NS

from qfm_iqm.data.meta import read_meta
from qfm_iqm.io import write_json
from qfm_iqm.pipeline.stages.base import stage
from qfm_iqm.pipeline.stages.common import weights


@stage
def extract_features(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.features.extract import CropRecipe, extract

    meta = read_meta(input.meta, ["image_id", "path"])
    cfg = params.backbone
    feats, stats = extract(meta, cfg["name"], weights(cfg, input), CropRecipe(**params.crops), cfg["batch_size"],
                           cfg["channels_last"], cfg["device"], cfg["compile"], precision=cfg["precision"])
    feats.save(output.features)
    write_json(stats, output.stats)


@stage
def extract_activations(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.features.extract import CropRecipe
    from qfm_iqm.method import partial

    meta = read_meta(input.meta, ["image_id", "path"])
    cfg = params.backbone
    feats, stats = partial.extract_activations(meta, cfg["name"], weights(cfg, input), CropRecipe(**params.crops),
                                               params.from_block, cfg["batch_size"], cfg["channels_last"],
                                               cfg["device"], cfg["compile"], precision=cfg["precision"])
    feats.save(output.activations)
    write_json(stats, output.stats)
