"""One entry point per workflow rule: named input files and params in, named output files out.

Rules call these through ``workflow/scripts/run_stage.py``, which finds the rule's stage by its name in the
registry ``STAGES``; stages hold no logic of their own beyond reading inputs, calling the library and writing
outputs. One module per rule file of ``workflow/rules`` (``data``, ``features``, ``pairs``, ``train``,
``evaluate``, ``figures``, ``deploy``) registers its rules' stages under the rule's name. Every job is a fresh
process, so heavy libraries (torch, timm, scikit-image, scikit-learn, matplotlib) are imported inside the stages
that need them: importing all of them would cost seconds per job.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace as NS

from qfm_iqm.registry import Registry

Stage = Callable[[NS, NS, NS], None]
STAGES: Registry[Stage] = Registry("stage")


def stage(fn: Stage) -> Stage:
    """Register ``fn`` as the stage of the rule of its name."""
    return STAGES.add(fn.__name__, fn)


# The stage modules register their stages on import; they import ``stage`` from here, so they come after it.
from qfm_iqm.pipeline.stages import data, deploy, evaluate, features, figures, pairs, train  # noqa: F401
