"""Backbones: any timm model gives multi-scale descriptors."""

from __future__ import annotations

import pytest
import torch

from qfm_iqm.features.backbone import create_backbone
from qfm_iqm.io import InputError


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224"])
def test_any_timm_backbone_gives_multiscale_descriptors(name: str) -> None:
    from qfm_iqm.features.backbone import MultiScaleDescriptor

    descriptor = MultiScaleDescriptor(create_backbone(name, "none"))
    with torch.no_grad():
        out = descriptor(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, sum(descriptor.block_sizes)) and descriptor.block_names[-1] == "final_mean"
    with pytest.raises(InputError, match="unknown timm backbone 'no_such_net'"):
        create_backbone("no_such_net", "none")
