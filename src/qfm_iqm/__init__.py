"""QFM-IQM reproduction: semantic-noise-robust no-reference image quality assessment.

As pyiqa: ``qfm_iqm.create_metric("livec")`` returns the shipped LIVEC model as an ``nn.Module``
(``qfm_iqm.deploy.metric``) and ``qfm_iqm.list_models()`` names the shipped models; ``qfm_iqm.load_model`` returns
the ``Scorer`` behind both (``qfm_iqm.deploy.scorer``). torch is imported on the first call, not with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qfm_iqm.deploy.metric import QualityMetric
    from qfm_iqm.deploy.scorer import Scorer

from qfm_iqm.version import __version__ as __version__  # the package's, re-exported


def create_metric(model: Any = "livec", device: str = "cpu", as_loss: bool = False, **kwargs: Any) -> QualityMetric:
    """A shipped model by name or a bundle folder as a no-reference metric, an ``nn.Module``
    (``qfm_iqm.deploy.metric.QualityMetric``)."""
    from qfm_iqm.deploy.metric import create_metric as create

    return create(model, device, as_loss, **kwargs)


def list_models() -> list[str]:
    """The names of the shipped models."""
    from qfm_iqm.deploy.metric import list_models as names

    return names()


def load_model(model: Any = "livec", device: str = "cpu", batch_size: int = 40, compile: str = "auto") -> Scorer:
    """The scorer of a shipped model by name or of a bundle folder (``qfm_iqm.deploy.scorer.load_model``), for
    existing users; ``create_metric`` wraps it."""
    from qfm_iqm.deploy.scorer import load_model as load

    return load(model, device, batch_size, compile)
