"""The config schema: shipped configs are valid, bad keys are named, enums follow the registries."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from qfm_iqm.data.distortions import DISTORTIONS
from qfm_iqm.data.registry import KINDS, PUBLISHED, check_options
from qfm_iqm.method.heads import HEADS
from qfm_iqm.method.pairs import STRATEGIES
from qfm_iqm.method.train import LOSSES
from qfm_iqm.settings import (
    WARMUP_STEP_KEYS,
    ConfigError,
    check_cross_dataset,
    check_splits,
    finetune_training,
    finetuned_reference,
    finetuned_variants,
    load_config_file,
    merged,
    resolve_variants,
    schema_default,
    split_finetuned,
    validate,
)

SCHEMA = REPO / "src/qfm_iqm/config.schema.yaml"


def _default() -> dict:
    return load_config_file(REPO / "config/config.yaml")


def _shipped(*overrides: str) -> dict:
    config = _default()
    for name in overrides:
        config = merged(config, load_config_file(REPO / "config" / name))
    return config


@pytest.mark.parametrize("text, where, key, lines", [
    ("student:\n  hidden: 2\nteacher: {}\nstudent:\n  train:\n    epochs: 3\n", "line 4, column 1", "student", "1 and 4"),
    ("student:\n  train:\n    epochs: 3\n    lr: 0.1\n    epochs: 4\n", "line 5, column 5", "epochs", "3 and 5"),
])
def test_a_key_repeated_in_a_section_is_refused_naming_both_lines(tmp_path: Path, text: str, where: str, key: str,
                                                                  lines: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    message = (f"config file {tmp_path / 'c.yaml'}, {where}: key '{key}' appears twice in one section (lines {lines}): "
               "the second would replace the first and every setting under it; merge them")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_config_file(tmp_path / "c.yaml")


def test_scientific_notation_that_yaml_reads_as_text_gets_the_hint() -> None:
    config = _default()
    config["student"]["train"]["lr"] = yaml.safe_load("lr: 1e-3")["lr"]  # the string '1e-3'
    with pytest.raises(ConfigError, match=re.escape("config key 'student.train.lr': 1e-3 is text to YAML 1.1, which "
                                                    "needs a dot in a number with an exponent; write 1.0e-3")):
        validate(config, SCHEMA)


@pytest.mark.parametrize("overrides", [[], ["livec.yaml"], ["livec.yaml", "livec_global.yaml"],
                                       ["livec.yaml", "cross.yaml"], ["livec.yaml", "livec_decoder.yaml"],
                                       ["paper.yaml"]])
def test_shipped_configs_are_valid(overrides: list[str]) -> None:
    config = _shipped(*overrides)
    validate(config, SCHEMA)
    variants = resolve_variants(config, SCHEMA)
    assert set(variants) >= {"full", "baseline"}
    check_splits(config["datasets"])
    check_cross_dataset(config, variants, finetuned_variants(config, SCHEMA))


def test_paper_config_covers_the_eight_datasets_in_fine_tune_mode() -> None:
    config = _shipped("paper.yaml")
    assert set(config["run"]) == set(PUBLISHED) and len(PUBLISHED) == 8
    assert {config["datasets"][name]["kind"] for name in config["run"]} == set(PUBLISHED)
    assert all(config["datasets"][name]["n_splits"] == 10 for name in config["run"])
    assert config["finetune"]["enabled"] and config["backbone"]["name"].startswith("deit3_small_patch16_224")


def test_paper_config_fine_tunes_the_deiqt_decoder_and_its_baseline() -> None:
    """DEIQT's decoder over ViT-S tokens (d_model 384, 6 heads, one layer, six CLS queries, feed-forward 4 x 384)
    fine-tuned from block 0, for the full model and every variant; the baseline keeps the decoder but drops the gate:
    it is the DEIQT row."""
    config = _shipped("paper.yaml")
    finetuned = finetuned_variants(config, SCHEMA)
    assert list(finetuned) == ["finetune", "finetune_baseline", "finetune_gate", "finetune_matching",
                               "finetune_distillation"]
    deiqt = {"head": "decoder", "hidden": 384, "heads": 6, "depth": 1, "query": "cls", "queries": 6, "mlp_ratio": 4}
    assert all(finetuned[m]["arch"].items() >= deiqt.items() for m in finetuned)
    assert finetuned["finetune"]["arch"]["gate"] and not finetuned["finetune_baseline"]["arch"]["gate"]
    assert finetuned["finetune_baseline"]["matching"]["sens_weight"] == 0 == finetuned["finetune_baseline"][
        "distillation"]["kd_weight"]
    assert finetuned_reference(config, finetuned) == "finetune_baseline" and config["partial"]["from_block"] == 0
    assert resolve_variants(config, SCHEMA)["full"]["arch"]["head"] == "mlp"  # the frozen students stay pooled
    assert split_finetuned(config, finetuned, 9) == list(finetuned)  # every split
    config["ablation"]["splits"] = 2
    assert split_finetuned(config, finetuned, 9) == ["finetune", "finetune_baseline"]


def test_a_fine_tuned_student_trains_on_the_finetune_keys_that_say_how_not_which() -> None:
    """Which students fine-tune (``enabled``, ``variants``, ``arch``) is not how each trains: adding a variant reruns no
    other model's fine-tune job."""
    config = _shipped("paper.yaml")
    validate(config, SCHEMA)  # the schema's defaults filled in
    section = config["finetune"]
    training = finetune_training(section)
    assert set(training) == set(section) - {"enabled", "variants", "arch"} and training["lr_backbone"] == 2.0e-4
    assert training["warmup_epochs"] == 3 and training["decay_rate"] == 0.1  # DEIQT's schedule: the schema's defaults


def test_the_warm_up_keys_train_only_a_warm_up_schedule() -> None:
    """Under one-cycle the warm-up and decay keys change nothing, so changing them reruns no fine-tune job."""
    config = _shipped()
    validate(config, SCHEMA)
    assert config["finetune"]["schedule"] == "onecycle" and config["finetune"]["warmup_epochs"] == 3
    assert not set(finetune_training(config["finetune"])) & set(WARMUP_STEP_KEYS)
    assert set(WARMUP_STEP_KEYS) <= set(finetune_training({**config["finetune"], "schedule": "warmup_step"}))


def test_fine_tuned_variants_are_checked() -> None:
    config = _shipped("paper.yaml")
    config["finetune"]["variants"] = ["full", "random_partner"]
    with pytest.raises(ConfigError, match=re.escape("config key 'finetune.variants': 'random_partner' is neither")):
        finetuned_variants(config, SCHEMA)
    config["finetune"]["variants"] = ["full", "baseline", "gate"]
    config["ablation"]["splits"] = 3  # finetune_gate trains on 3 splits only: it cannot be tested on every split
    config["cross_dataset"]["models"].append("finetune_gate")
    with pytest.raises(ConfigError, match=re.escape("'cross_dataset.models': 'finetune_gate' is not a model of this run")):
        check_cross_dataset(config, resolve_variants(config, SCHEMA), finetuned_variants(config, SCHEMA))
    config["finetune"].update(enabled=False)
    assert finetuned_variants(config, SCHEMA) == {}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["datasets"]["livec"].update(split="official"),
     "config key 'datasets.livec.n_splits': must be 1 with split: official"),
    (lambda c: c["cross_dataset"]["pairs"].append(["livec", "koniq"]),
     "config key 'cross_dataset.pairs.2': dataset 'koniq' has no entry under 'datasets'"),
    (lambda c: c["cross_dataset"]["models"].append("finetune"),
     "config key 'cross_dataset.models': 'finetune' is not a model of this run"),
    # with ablation.splits, variants other than full and the reference are not on every split
    (lambda c: (c["ablation"].update(splits=3), c["cross_dataset"]["models"].append("gate")),
     "config key 'cross_dataset.models': 'gate' is not a model of this run"),
    (lambda c: c["datasets"].update(cross_dataset=c["datasets"]["demo"]), "the name is reserved"),
])
def test_dataset_and_cross_dataset_errors_name_the_key(change, message: str) -> None:
    config = _shipped("livec.yaml", "cross.yaml")
    change(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_splits(config["datasets"])
        check_cross_dataset(config, resolve_variants(config, SCHEMA))


def test_preparer_options_are_checked_by_name() -> None:
    check_options("koniq10k", {"resolution": "512x384"}, "datasets.koniq10k.options")
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'datasets.k.options.resolutoin'")):
        check_options("koniq10k", {"resolutoin": "512x384"}, "datasets.k.options")


def test_errors_name_every_offending_key() -> None:
    config = _default()
    config["student"]["matching"]["epz"] = 0.1
    config["teacher"]["train"]["kd_weight"] = 1.0  # distillation is a student setting
    config["crops"]["n"] = "five"
    with pytest.raises(ConfigError) as err:
        validate(config, SCHEMA)
    message = str(err.value)
    assert "unknown config key 'student.matching.epz'" in message
    assert "unknown config key 'teacher.train.kd_weight'" in message
    assert "config key 'crops.n': 'five' is not of type 'integer'" in message


def test_schema_choices_follow_the_registries() -> None:
    defs = yaml.safe_load(SCHEMA.read_text())["$defs"]
    assert set(defs["train"]["properties"]["loss"]["enum"]) == set(LOSSES)
    assert set(defs["arch"]["properties"]["head"]["enum"]) == set(HEADS)
    assert set(defs["distortions"]["items"]["enum"]) == set(DISTORTIONS)
    matching = yaml.safe_load(SCHEMA.read_text())["properties"]["student"]["properties"]["matching"]
    assert set(matching["properties"]["strategy"]["enum"]) == set(STRATEGIES)
    assert defs["published"]["properties"]["kind"]["enum"] == PUBLISHED
    assert set(defs["common"]["kind"]["enum"]) == {"demo", *KINDS}


def test_ablation_variants_are_student_overrides() -> None:
    config = _default()
    assert config["ablation"]["run"] == ["baseline", "gate", "matching", "distillation"]
    assert yaml.safe_load((REPO / "config/livec.yaml").read_text())["ablation"]["run"] == config["ablation"]["run"]
    config["ablation"]["run"] = [*config["ablation"]["run"], "random_partner", "topk_partner", "train_memory"]
    variants = resolve_variants(config, SCHEMA)
    assert list(variants) == ["full", "baseline", "gate", "matching", "distillation", "random_partner",
                              "topk_partner", "train_memory"]
    full, baseline = variants["full"], variants["baseline"]
    default = _default()
    validate(default, SCHEMA)
    assert full == default["student"] and full["arch"]["gate"] and full["distillation"]["kd_weight"] > 0
    assert not baseline["arch"]["gate"] and baseline["distillation"]["kd_weight"] == 0
    assert baseline["matching"]["adv_weight"] == baseline["matching"]["sens_weight"] == 0
    assert baseline["train"] == full["train"] and baseline["arch"]["hidden"] == full["arch"]["hidden"]
    assert variants["topk_partner"]["matching"] == {**full["matching"], "strategy": "topk_mean"}


@pytest.mark.parametrize("change, message", [
    (lambda a: a["variants"]["gate"]["arch"].update(gatez=True), "unknown config key 'ablation.variants.gate.arch.gatez'"),
    (lambda a: a["variants"]["gate"].update(matching={"strategy": "nearest"}), "config key 'ablation.variants.gate.matching.strategy': 'nearest' is not one of"),
    (lambda a: a["run"].append("missing"), "variant 'missing' has no entry under 'ablation.variants'"),
    (lambda a: a.update(run=["full"], variants={"full": {}}), "the name 'full' is reserved"),
    (lambda a: a.update(reference="nothing"), "'ablation.reference': 'nothing' is not a model"),
])
def test_bad_ablation_entries_are_named(change, message: str) -> None:
    config = _default()
    config["ablation"]["variants"]["gate"].setdefault("arch", {})
    change(config["ablation"])
    with pytest.raises(ConfigError, match=message):
        resolve_variants(config, SCHEMA)


def test_validation_fills_in_the_schemas_defaults() -> None:
    config = _shipped("livec.yaml", "livec_decoder.yaml")
    assert "precision" not in config["backbone"] and "heads" not in config["teacher"]["arch"]
    validate(config, SCHEMA)
    assert config["backbone"]["precision"] == schema_default("backbone.precision") == "fp32"
    assert config["backbone"]["compile"] is False and config["crops"]["global_view"] is False
    assert config["teacher"]["train"]["precision"] == "fp32" and config["datasets"]["livec"]["split"] == "random"
    assert config["student"]["train"]["precision"] == "bf16"  # what a config sets stays
    # the decoder's keys get their defaults under head: decoder only
    assert {k: config["student"]["arch"][k] for k in ("heads", "depth", "query", "queries", "mlp_ratio")} == {
        "heads": 4, "depth": 1, "query": "learned", "queries": 1, "mlp_ratio": 2}
    assert not {"heads", "depth", "query", "queries", "mlp_ratio"} & set(config["teacher"]["arch"])  # an mlp
    again = copy.deepcopy(config)
    validate(again, SCHEMA)
    assert again == config
    with pytest.raises(KeyError, match="no default"):
        schema_default("student.train.epochs")


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_a_key_of_another_head_is_an_error_naming_it(head: str) -> None:
    config = _default()
    config["student"]["arch"].update(head=head, heads=4)
    config["teacher"]["arch"].update(query="learned", queries=6)
    with pytest.raises(ConfigError) as err:
        validate(config, SCHEMA)
    assert "config key 'student.arch.heads': only for head decoder" in str(err.value)
    assert "config key 'teacher.arch.query': only for head decoder" in str(err.value)
    assert "config key 'teacher.arch.queries': only for head decoder" in str(err.value)
    config = _default()
    config["ablation"]["variants"]["gate"]["arch"] = {"depth": 2}
    with pytest.raises(ConfigError, match=re.escape("config key 'ablation.variants.gate.arch.depth': only for head")):
        resolve_variants(config, SCHEMA)
    config["ablation"]["variants"]["gate"]["arch"] = {"head": "decoder", "depth": 2}  # a decoder variant takes them
    arch = resolve_variants(config, SCHEMA)["gate"]["arch"]
    assert (arch["head"], arch["depth"], arch["heads"], arch["query"]) == ("decoder", 2, 4, "learned")


def _schema_defaults(node: Any, name: str | None = None) -> list[tuple[str, Any]]:
    """(key, default) of every ``default:`` in the schema."""
    if isinstance(node, list):
        return [d for v in node for d in _schema_defaults(v, name)]
    if not isinstance(node, dict):
        return []
    own = [(name, node["default"])] if "default" in node and name is not None else []
    return own + [d for k, v in node.items() for d in _schema_defaults(v, k)]


# Places that may write a schema default's value as a default, each with its reason.
RESTATED_ALLOWED = {
    ("src/qfm_iqm/data/splits.py", "all"): "the split named all (every image), not crops.stages' default",
    ("src/qfm_iqm/deploy/scorer.py", "fp32"): "bundles from before backbone.precision was recorded were extracted in "
                                              "fp32: a fact about old files, not the config's default",
    ("src/qfm_iqm/deploy/metric.py", "mean"): "as_loss's reduction, pyiqa's default, not crops.pooling's",
}


def _restated(root: Path) -> dict[tuple[str, Any], list[str]]:
    """(file, literal) -> lines of ``root``'s package and rules that write a distinctive schema default (a string,
    or a number other than 0 and 1; booleans and null are too common) as a default or assignment: ``= "fp32"``,
    ``heads: int = 4``, ``.get("precision", "fp32")``, ``setdefault(..., "fp32")``."""
    hits: dict[tuple[str, Any], list[str]] = {}
    for name, value in _schema_defaults(yaml.safe_load((root / "src/qfm_iqm/config.schema.yaml").read_text())):
        if isinstance(value, str):
            literal = f"[\"']{re.escape(value)}[\"']"
            patterns = [rf"(?<![=!<>])=\s*{literal}", rf"\.get\([^()]*,\s*{literal}\s*\)",
                        rf"setdefault\([^()]*,\s*{literal}\s*\)"]
        elif isinstance(value, int | float) and not isinstance(value, bool) and value not in (0, 1):
            patterns = [rf"\b{name}\s*(?::[^=\n]*)?(?<![=!<>])=\s*{value}\b(?![.\d])",
                        rf"\.get\(\s*[\"']{name}[\"']\s*,\s*{value}\s*\)"]
        else:
            continue
        files = [*sorted((root / "src/qfm_iqm").rglob("*.py")), *sorted((root / "workflow/rules").glob("*.smk")),
                 *sorted((root / "bench").glob("*.py"))]
        for path in files:
            if path == root / "src/qfm_iqm/settings.py":  # reads the defaults from the schema
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if any(re.search(p, line) for p in patterns):
                    hits.setdefault((str(path.relative_to(root)), value), []).append(f"{number}: {line.strip()}")
    return hits


def test_no_module_restates_a_schema_default() -> None:
    """A default is written once, in the schema (filled in by ``validate``; library code reads it with
    ``schema_default``): no module writes a distinctive default's value as a default, but the allowed places."""
    hits = _restated(REPO)
    restated = {where: lines for where, lines in hits.items() if where not in RESTATED_ALLOWED}
    assert not restated, f"schema defaults restated (read them from the config, or with schema_default): {restated}"
    assert set(RESTATED_ALLOWED) <= set(hits), "stale allow-list entries: " + str(set(RESTATED_ALLOWED) - set(hits))


def test_the_feature_recipe_defaults_are_the_schemas_and_keep_old_cache_paths() -> None:
    import dataclasses

    from qfm_iqm.features.cache import crops_tag
    from qfm_iqm.features.extract import CropRecipe
    from qfm_iqm.settings import schema_default

    recipe = CropRecipe(n=1, size=32)
    for field in dataclasses.fields(CropRecipe):
        if field.default is not dataclasses.MISSING and field.name != "seed":  # seed: required by the schema
            assert schema_default(f"crops.{field.name}") == getattr(recipe, field.name), field.name
    old = {"n": 5, "size": 224, "seed": 0, "global_view": False}
    assert crops_tag({**old, **{k: schema_default(f"crops.{k}") for k in ("input", "flip", "stages", "pooling",
                                                                           "max_side")}}) == "c5s224r0"
    assert crops_tag({**old, "input": "native", "max_side": 512, "flip": True, "stages": [3, 1],
                      "pooling": "mean"}) == "native512f_st1-3_mean"


def test_a_native_input_is_refused_for_decoders_and_fine_tuning_and_stages_for_fine_tuning() -> None:
    from qfm_iqm.settings import ConfigError, check_feature_recipe

    config = {"crops": {"input": "native", "global_view": False, "stages": "all", "pooling": "mean_std"}, "teacher": {"arch": {"head": "mlp"}}}
    check_feature_recipe(config, {"full": {"arch": {"head": "mlp"}}})
    with pytest.raises(ConfigError, match="crops.input.*full has head: decoder"):
        check_feature_recipe(config, {"full": {"arch": {"head": "decoder"}}})
    with pytest.raises(ConfigError, match="fine-tuning"):
        check_feature_recipe(config, {}, ["finetune"])
    config["crops"] = {"input": "crops", "global_view": False, "stages": [4], "pooling": "mean_std"}
    check_feature_recipe(config, {"full": {"arch": {"head": "decoder"}}})
    with pytest.raises(ConfigError, match="crops.stages"):
        check_feature_recipe(config, {}, ["finetune"])


# Each config file and the files it is given after (config/README.md): a key it sets to the value it would have
# anyway, the schema's default, is a default written twice.
CONFIG_CHAINS = {"config.yaml": [], "livec.yaml": ["config.yaml"], "livec_decoder.yaml": ["config.yaml", "livec.yaml"],
                 "livec_global.yaml": ["config.yaml", "livec.yaml"], "cross.yaml": ["config.yaml", "livec.yaml"],
                 "paper.yaml": ["config.yaml"]}


def _leaves(node: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


CONFIG_ALLOWED = {  # (file, key): why it may state the schema's default
    **{("livec_decoder.yaml", f"student.arch.{key}"): "DEIQT's decoder spelt out (its heads, depth and query are the "
       "schema's defaults too); leaving them out would reorder the params text Snakemake compares and rerun the "
       "decoder runs" for key in ("heads", "depth", "query")},
    ("paper.yaml", "finetune.arch.depth"): "the paper's decoder spelt out, as in livec_decoder.yaml",
}


def test_no_config_file_restates_a_schema_default() -> None:
    from qfm_iqm.settings import load_config_file, merged, schema_default

    config = REPO / "config"
    assert set(CONFIG_CHAINS) == {p.name for p in config.glob("*.yaml")} - {"datasets.lock.yaml"}, "new config file?"
    restated = []
    for name, chain in CONFIG_CHAINS.items():
        base = {}
        if chain:
            base = functools.reduce(merged, [load_config_file(config / c) for c in chain])
            validate(base, SCHEMA)  # with the schema's defaults filled in
        for path, value in _leaves(load_config_file(config / name)):
            try:
                default = schema_default(".".join(path))
            except KeyError:
                continue  # no default: required, or inside a map of names (datasets, variants)
            given = functools.reduce(lambda node, key: node.get(key, {}), path[:-1], base).get(path[-1], default)
            if value == default == given and (name, ".".join(path)) not in CONFIG_ALLOWED:
                restated.append(f"config/{name}: {'.'.join(path)}: {value!r}")
    assert not restated, "keys set to the schema's default (leave them out, or say so in a comment): " + str(restated)
# The settings of the method: a library function or bench that gives one of these keys a default of its own (other
# than None, or 0 for a component that is off), or gives any parameter one of their choices (an enum value), writes
# a default the schema owns or that disagrees with it. Batch sizes are left out: forward passes batch as they like.
METHOD_SECTIONS = ["$defs.arch", "$defs.train", "properties.student.properties.matching",
                   "properties.student.properties.distillation", "properties.partial", "properties.pairs"]
KEYWORD_ALLOWED = {
    ("src/qfm_iqm/deploy/metric.py", "loss_reduction", "mean"): "pyiqa's reduction of a loss, not partner_draw's",
    **{(f"src/qfm_iqm/method/{module}.py", "top_k", 1): "one partner: the strategies but topk_mean take no top_k "
       "(the rule passes it to topk_mean only, so that a change reruns only that mining)" for module in
       ("memory", "pairs")},
}


def _method_keys_and_choices() -> tuple[set[str], set[str]]:
    schema = yaml.safe_load(SCHEMA.read_text())
    keys, choices = set(), set()
    for section in METHOD_SECTIONS:
        node = functools.reduce(lambda n, k: n[k], section.split("."), schema)
        for key, spec in node["properties"].items():
            keys.add(key)
            spec = node_spec = spec if "$ref" not in spec else {**functools.reduce(
                lambda n, k: n[k], spec["$ref"].removeprefix("#/").split("/"), schema), **spec}
            choices.update(v for v in node_spec.get("enum", []) if isinstance(v, str))
    return keys - {"batch_size", "seed", "gate"}, choices


def _keyword_defaults(path: Path) -> Iterator[tuple[str, Any, int]]:
    """(parameter, default, line) of every literal keyword default of a function or dataclass field in ``path``."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True),
                     *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None)]
            named = [(a.arg, d) for a, d in pairs]
        elif isinstance(node, ast.ClassDef):
            named = [(s.target.id, s.value) for s in node.body
                     if isinstance(s, ast.AnnAssign) and s.value is not None and isinstance(s.target, ast.Name)]
        else:
            continue
        for name, default in named:
            if isinstance(default, ast.Constant) and default.value is not None:
                yield name, default.value, default.lineno


def test_no_library_function_or_bench_writes_a_default_of_the_methods_settings() -> None:
    keys, choices = _method_keys_and_choices()
    found = {}
    for path in [*sorted((REPO / "src/qfm_iqm").rglob("*.py")), *sorted((REPO / "bench").glob("*.py"))]:
        where = str(path.relative_to(REPO))
        for name, value, line in _keyword_defaults(path):
            own = name in keys and not isinstance(value, bool) and value not in (0, 0.0)
            if (own or (isinstance(value, str) and value in choices)) and (where, name, value) not in KEYWORD_ALLOWED:
                found[(where, name, value)] = line
    assert not found, f"defaults of the method's settings outside the schema (take them from the config): {found}"
    stale = {k for k in KEYWORD_ALLOWED if k[0] not in {str(p.relative_to(REPO)) for p in REPO.rglob(k[0])}}
    assert not stale, f"allow-list entries of missing files: {stale}"
