"""Stages of ``workflow/rules/train.smk``: the teacher, pool labels, the students and the fine-tuned student."""

from __future__ import annotations

import logging
from types import SimpleNamespace as NS

import numpy as np

from qfm_iqm.data import splits
from qfm_iqm.data.meta import POOL_COLUMNS, read_meta
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.io import write_csv, write_json
from qfm_iqm.method.memory import StudentMemory, pool_labels
from qfm_iqm.settings import loss_settings
from qfm_iqm.pipeline.stages.base import stage
from qfm_iqm.pipeline.stages.common import labelled, memory, model_args, part, weights

log = logging.getLogger(__name__)


def _fit(arch: dict, model: dict, cfg: dict, input: NS, output: NS, feats: FeatureSet, y: np.ndarray, seeds: int = 1,
         **extra: np.ndarray) -> None:
    """Train a fresh, seeded model, or a seed ensemble of ``seeds`` (``qfm_iqm.method.train.fit_seeds``; ``model``:
    the rule's model params) and write its checkpoint and per-epoch log."""
    from qfm_iqm.method.checkpoint import save_model
    from qfm_iqm.method.train import fit_seeds

    trained, history = fit_seeds(arch, feats, y, cfg, model_args(model, input), seeds, **extra)
    save_model(trained, output.model)
    write_csv(history, output.log)


def _write_info(path: str, mem: StudentMemory, images: int, student: dict) -> None:
    """Record what a student of ``images`` labelled images read (``StudentMemory.info``)."""
    info = mem.info(images, student["distillation"]["kd_weight"])
    write_json(info, path)
    log.info("student data: %s", info)


@stage
def train_teacher(input: NS, output: NS, params: NS) -> None:
    rows, feats = labelled(input, splits.parse_split(params.split), "train")
    teacher = params.teacher
    _fit(teacher["arch"], params.model, teacher["train"], input, output, feats, rows["score"].to_numpy())


@stage
def label_pool(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.method.checkpoint import load_model
    from qfm_iqm.method.train import predict_crops

    pool_meta = read_meta(input.pool_meta, POOL_COLUMNS)
    features = FeatureSet.load(input.pool_features).subset(pool_meta["image_id"]).features
    y = predict_crops(load_model(input.teacher), features)
    write_csv(pool_labels(pool_meta, y), output.labels)
    log.info("teacher labelled %d pool images: scores %.3f..%.3f", len(y), y.mean(1).min(), y.mean(1).max())


@stage
def train_student(input: NS, output: NS, params: NS) -> None:
    rows, feats = labelled(input, splits.parse_split(params.split), "train")
    student = params.student
    mem = memory(input, rows, student)
    _fit(student["arch"], params.model, loss_settings(student), input, output, feats, rows["score"].to_numpy(),
         params.seeds, **mem.train_inputs(feats.features, student["distillation"]["kd_weight"]))
    _write_info(output.info, mem, len(rows), student)


@stage
def finetune_student(input: NS, output: NS, params: NS) -> None:
    from qfm_iqm.method import finetune
    from qfm_iqm.method.partial import partial_spec

    split = int(params.split)
    rows, test = part(input, split, "train"), part(input, split, "test")
    student, cfg, backbone = params.student, params.finetune, params.backbone
    mem = memory(input, rows, student)
    pool_meta = None if mem.labels is None else read_meta(input.pool_meta, POOL_COLUMNS)
    pool, bank = finetune.bank_images(rows, pool_meta, mem.labels, mem.bank_ids, student["distillation"]["kd_weight"])
    ft_cfg = finetune.student_config(student, cfg, params.crops["size"], partial_spec(params.model))
    model, history = finetune.finetune(backbone["name"], weights(backbone, input), student["arch"], ft_cfg, rows,
                                       mem.partners, pool, bank)
    finetune.save(model, output.model, backbone["name"])
    write_csv(history, output.log)
    preds = finetune.predict(model, test, finetune.scoring_recipe(params.crops, ft_cfg.test_crops),
                             backbone["batch_size"], cfg["device"])
    write_csv(test[["image_id"]].assign(**{params.name: preds}), output.predictions)
    _write_info(output.info, mem, len(rows), student)


@stage
def finetune_sensitivity(input: NS, output: NS, params: NS) -> None:
    import pandas as pd

    from qfm_iqm.evaluation.sensitivity import matched_partners, noise_sensitivity
    from qfm_iqm.method import finetune

    split = int(params.split)
    test, feats = labelled(input, split, "test")
    noise = params.sensitivity
    partners = matched_partners(test["image_id"].to_numpy(), test["score"].to_numpy(), feats.semantic(), noise["tau"],
                                noise["k_fallback"])
    recipe = finetune.scoring_recipe(params.crops, params.test_crops)
    tables = [noise_sensitivity(finetune.load(path), test, recipe, partners, params.probes[name], noise["large_gap"],
                                params.batch_size, params.device).assign(model=name)
              for name, path in zip(params.names, input.models, strict=True)]
    table = pd.concat(tables, ignore_index=True).assign(split=split)
    write_csv(table, output.sensitivity)
    log.info("split %d:\n%s", split, table.to_string(index=False))
