"""The config schema: shipped configs are valid, bad keys are named, enums follow the registries."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO

from qfm_iqm.config import ConfigError, validate
from qfm_iqm.data.distortions import DISTORTIONS
from qfm_iqm.models import HEADS
from qfm_iqm.train import LOSSES

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def _default() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_shipped_configs_are_valid() -> None:
    validate(_default(), SCHEMA)
    merged = _default()
    livec = yaml.safe_load((REPO / "config/livec.yaml").read_text())
    merged["run"] = livec["run"]
    merged["datasets"].update(livec["datasets"])
    validate(merged, SCHEMA)


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
