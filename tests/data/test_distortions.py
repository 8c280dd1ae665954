"""The distortions of the demo set and the expansion pool: each one degrades an image more at each level."""

from __future__ import annotations

import numpy as np
import pytest

from qfm_iqm.data import distortions


def test_every_distortion_degrades_monotonically() -> None:
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(0.5, 0.2, (48, 48, 3)), 0, 1)
    for name in distortions.DISTORTIONS:
        errors = [np.abs(distortions.apply(name, img, lv, np.random.default_rng(1)) - img).mean()
                  for lv in range(1, distortions.MAX_LEVEL + 1)]
        out = distortions.apply(name, img, 3, np.random.default_rng(1))
        assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1, name
        assert errors == sorted(errors) and errors[0] > 0, (name, errors)
    with pytest.raises(KeyError, match="unknown distortion 'nope'"):
        distortions.apply("nope", img, 1, rng)
