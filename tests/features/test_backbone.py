"""Backbones: any timm model gives multi-scale descriptors; weights from a file (.pth, .safetensors) or timm's hub."""

from __future__ import annotations

import os

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


def test_a_state_dict_saved_from_timm_loads_strictly_from_pth_or_safetensors(tmp_path) -> None:
    from safetensors.torch import save_file

    name = "vit_tiny_patch16_224"
    state = create_backbone(name, "none").state_dict()
    torch.save(state, tmp_path / "vit.pth")
    save_file(state, tmp_path / "vit.safetensors")
    for path in (tmp_path / "vit.pth", tmp_path / "vit.safetensors"):
        loaded = create_backbone(name, path).state_dict()
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state), path
    save_file({k: v for k, v in state.items() if k != "cls_token"}, tmp_path / "partial.safetensors")
    with pytest.raises(InputError, match=r"(?s)weights .*partial\.safetensors do not fit the backbone: .*cls_token"):
        create_backbone(name, tmp_path / "partial.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match=r"backbone weights .*broken\.safetensors are not a readable safetensors file"):
        create_backbone(name, tmp_path / "broken.safetensors")


HUB_PROBE = "from qfm_iqm.features.backbone import check_hub_weights; check_hub_weights('vit_tiny_patch16_224')"


@pytest.mark.slow  # two fresh interpreters import timm (the hub client reads its settings at import)
def test_hub_weights_neither_cached_nor_reachable_stop_with_one_line_naming_the_model_and_the_ways_out(
        tmp_path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", HUB_PROBE], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "qfm_iqm.io.InputError: backbone.weights 'hub': timm's pretrained weights of vit_tiny_patch16_224 are not "
        "cached here and cannot be downloaded (the hub did not answer: OfflineModeIsEnabled); set backbone.weights "
        "to a state dict saved from timm (.pth or .safetensors), or run once with network access so that they are "
        "cached")
    # once in the Hugging Face cache (as timm's first download leaves them), they are found offline
    snapshot = tmp_path / "hf/hub/models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs/main").write_text("0" * 40)
    (snapshot / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (snapshot / "snapshots" / ("0" * 40) / "model.safetensors").write_bytes(b"")
    ok = subprocess.run([sys.executable, "-c", HUB_PROBE], env=env, capture_output=True, text=True, timeout=120,
                        check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
