"""One entry point per workflow rule: named input files and params in, named output files out.

Rules call these through ``workflow/scripts/run_stage.py``; they hold no logic of their own beyond
reading inputs, calling the library and writing outputs. One module per rule file of ``workflow/rules``
(``data``, ``features``, ``pairs``, ``train``, ``evaluate``, ``figures``, ``deploy``) registers its
rules' stages here under the rule's name. Every job is a fresh process, so heavy libraries (torch,
timm, scikit-image, scikit-learn, matplotlib) are imported inside the stages that need them:
importing all of them would cost seconds per job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import SimpleNamespace as NS

STAGES: dict[str, Callable[[NS, NS, NS], None]] = {}
MODULES = ("data", "features", "pairs", "train", "evaluate", "figures", "deploy")  # as workflow/rules/*.smk


def stage(fn: Callable[[NS, NS, NS], None]) -> Callable[[NS, NS, NS], None]:
    """Register ``fn`` as the stage of the rule of its name."""
    STAGES[fn.__name__] = fn
    return fn


for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")
