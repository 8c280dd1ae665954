"""Rules find their stages: every rule that runs the job script has a stage of its name in the registry ``STAGES``,
in the stage module of its rule file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, imported_modules

from qfm_iqm.pipeline.runner import run_stage
from qfm_iqm.pipeline.stages import STAGES


def scripted_rules() -> dict[str, str]:
    """Rule name -> its rule file's name, for each rule with a ``script:`` and each ``use rule`` of one."""
    rules: dict[str, str] = {}
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.split(r"^(?=(?:use )?rule )", path.read_text(), flags=re.MULTILINE):
            if match := re.match(r"rule (\w+):", block):
                if re.search(r"^\s+script:", block, flags=re.MULTILINE):
                    rules[match[1]] = path.stem
            elif (match := re.match(r"use rule (\w+) as (\w+)", block)) and match[1] in rules:
                rules[match[2]] = rules[match[1]]
    return rules


def test_every_scripted_rule_has_its_stage_in_its_rule_files_module() -> None:
    rules = scripted_rules()
    assert {"prepare_dataset", "prepare_resized_dataset", "extract_features", "export_model"} <= set(rules)
    assert sorted(rules) == STAGES.names()  # and no stage without a rule
    for rule, module in rules.items():
        assert STAGES[rule].__module__ == f"qfm_iqm.pipeline.stages.{module}", rule


def test_a_job_imports_its_rules_stage_without_the_heavy_libraries() -> None:
    """Every job is a fresh process: torch, timm, scikit-learn ... are imported by the stages that need them."""
    heavy = imported_modules("qfm_iqm.pipeline.runner") & {"torch", "timm", "matplotlib", "sklearn", "skimage"}
    assert not heavy, heavy


def test_an_unknown_rule_stops_with_the_registrys_message(tmp_path: Path) -> None:
    log = tmp_path / "no_such_rule.log"
    with pytest.raises(KeyError, match=r"^unknown stage 'no_such_rule'; known: \['acquire_dataset', "):
        run_stage("no_such_rule", {}, {}, {}, str(log))
    assert "unknown stage 'no_such_rule'; known: [" in log.read_text()
