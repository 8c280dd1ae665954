"""Stages of ``workflow/rules/pairs.smk``: the paper's observation and pair mining."""

from __future__ import annotations

import logging
from types import SimpleNamespace as NS

from qfm_iqm.data import splits
from qfm_iqm.io import write_csv, write_json
from qfm_iqm.method import memory, pairs
from qfm_iqm.pipeline.stages.base import stage
from qfm_iqm.pipeline.stages.common import labelled

log = logging.getLogger(__name__)


@stage
def pair_observation(input: NS, output: NS, params: NS) -> None:
    rows, feats = labelled(input, int(params.split), "train")
    cfg = params.observation
    stats, sample = pairs.observation(rows["score"].to_numpy(), feats.semantic(), cfg["large_gap"], cfg["n_random"],
                                      cfg["seed"])
    write_json(stats, output.stats)
    write_csv(sample, output.sample)
    log.info("observation: %s", stats)


@stage
def mine_pairs(input: NS, output: NS, params: NS) -> None:
    rows, feats = labelled(input, splits.parse_split(params.split), "train")
    pool = {}
    if params.memory == memory.WITH_POOL:
        labels, pool_feats = memory.read_pool(input.pool_labels, input.pool_features)
        pool = {"pool_ids": labels["image_id"], "pool_score": labels["teacher_score"].to_numpy(),
                "pool_semantic": pool_feats.semantic()}
    table, bank = memory.mine_partners(rows["image_id"].to_numpy(), rows["score"].to_numpy(), feats.semantic(),
                                       params.strategy, **params.matcher, **pool)
    write_csv(table, output.pairs)
    first = table[table["rank"] == 0]
    log.info("%s partners from a bank of %d (%s memory): %.0f%% from the pool, %.0f%% by fallback, median "
             "cosine distance %.3f", params.strategy, len(bank), params.memory,
             100 * (first["source"] == "pool").mean(), 100 * first["fallback"].mean(),
             first["cosine_distance"].median())
