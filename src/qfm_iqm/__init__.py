"""QFM-IQM reproduction: semantic-noise-robust no-reference image quality assessment.

``qfm_iqm.load_model("livec")`` returns a scorer of the shipped LIVEC model (``qfm_iqm.deploy.scorer``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qfm_iqm.deploy.scorer import Scorer

__version__ = "0.1.0"


def load_model(model: Any = "livec", device: str = "cpu", batch_size: int = 40, compile: str = "auto") -> Scorer:
    """A scorer of a shipped model by name or of a bundle folder (``qfm_iqm.deploy.scorer.load_model``); torch is
    imported on the first call, not with the package."""
    from qfm_iqm.deploy.scorer import load_model as load

    return load(model, device, batch_size, compile)
