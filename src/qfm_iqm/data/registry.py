"""Dataset kinds (the registry ``KINDS``): one per dataset format, each with its preparer and official source.

Every preparer reads a dataset's official layout and returns the uniform meta table
(``qfm_iqm.data.meta.META_COLUMNS``, plus ``official_part`` where the dataset defines an official split).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd

from qfm_iqm.data import csiq, kadid10k, koniq10k, live, livec, livefb, spaq, tid2013
from qfm_iqm.data.labels import prepare_labels
from qfm_iqm.data.resize import resize_images
from qfm_iqm.data.sources import DatasetSource
from qfm_iqm.io import write_csv
from qfm_iqm.registry import Registry
from qfm_iqm.settings import ConfigError


@dataclass(frozen=True)
class DatasetKind:
    """A dataset format: how to prepare it, and (for published datasets) where it comes from."""

    prepare: Callable[..., pd.DataFrame]
    source: DatasetSource | None = None
    expected_count: int | None = None  # the published size


def _published(module: ModuleType) -> tuple[str, DatasetKind]:
    """``(kind, DatasetKind)`` of a dataset module: its ``prepare_<kind>``, ``SOURCE`` and ``EXPECTED_COUNT``."""
    kind = module.__name__.rsplit(".", 1)[1]
    return kind, DatasetKind(getattr(module, f"prepare_{kind}"), module.SOURCE, module.EXPECTED_COUNT)


KINDS: Registry[DatasetKind] = Registry("dataset kind")
KINDS.add("labels", DatasetKind(prepare_labels))
for _module in (livec, live, csiq, tid2013, kadid10k, koniq10k, spaq, livefb):
    KINDS.add(*_published(_module))
PUBLISHED = [name for name, kind in KINDS.items() if kind.source is not None]


def check_options(kind: str, options: dict, key: str) -> None:
    """Raise ConfigError naming ``key.<option>`` for an option the preparer of ``kind`` does not take."""
    params = inspect.signature(KINDS[kind].prepare).parameters
    allowed = [p for p in params if p not in ("root", "expected_count")]
    for name in options:
        if name not in allowed:
            raise ConfigError(f"unknown config key '{key}.{name}' (dataset kind {kind!r} takes {allowed or 'none'})")


def prepare(kind: str, out_meta: str | Path, out_images: str | Path | None = None, resize: dict | None = None,
            threads: int = 1, options: dict | None = None, **layout) -> pd.DataFrame:
    """Prepare a dataset of ``kind`` from its official ``layout`` (root, label files ...) with its
    preparer ``options``; bring its images to the ``resize`` convention in ``out_images``; write the meta table."""
    meta = KINDS[kind].prepare(**layout, **(options or {}))
    if resize:
        meta = resize_images(meta, out_images, out_meta, threads, **resize)
    write_csv(meta, out_meta)
    return meta
