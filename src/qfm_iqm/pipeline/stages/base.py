"""The registry of stages, one per workflow rule (``STAGES``), and ``stage``, which registers a function under its
name; the stage modules import it from here and the package imports them, so the imports point one way."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace as NS

from qfm_iqm.registry import Registry

Stage = Callable[[NS, NS, NS], None]
STAGES: Registry[Stage] = Registry("stage")


def stage(fn: Stage) -> Stage:
    """Register ``fn`` as the stage of the rule of its name."""
    return STAGES.add(fn.__name__, fn)
