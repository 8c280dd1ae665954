"""One entry point per workflow rule: named input files and params in, named output files out.

Rules call these through ``workflow/scripts/run_stage.py``, which finds the rule's stage by its name in the
registry ``STAGES``; stages hold no logic of their own beyond reading inputs, calling the library and writing
outputs. One module per rule file of ``workflow/rules`` (``data``, ``features``, ``pairs``, ``train``,
``evaluate``, ``figures``, ``deploy``) registers its rules' stages under the rule's name. Every job is a fresh
process, so heavy libraries (torch, timm, scikit-image, scikit-learn, matplotlib) are imported inside the stages
that need them: importing all of them would cost seconds per job.
"""

from __future__ import annotations

from qfm_iqm.pipeline.stages import data, deploy, evaluate, features, figures, pairs, train  # noqa: F401  registers
from qfm_iqm.pipeline.stages.base import STAGES, stage  # noqa: F401  the registry, filled by the imports above
