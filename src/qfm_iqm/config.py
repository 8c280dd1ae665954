"""Config validation against the workflow's JSON schema, with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """An invalid config; the message names the offending key."""


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate(config: dict, schema_path: str | Path) -> None:
    """Raise ConfigError for unknown keys, wrong types or values, naming every offending key."""
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
