"""Fine-tune mode: an unfrozen backbone trained with the student's losses (CPU smoke test)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from PIL import Image, ImageFilter

from qfm_iqm.features.extract import CropRecipe
from qfm_iqm.features.weights import convert_package_weights
from qfm_iqm.method.finetune import FinetuneConfig, finetune, load, predict, save, student_config
from qfm_iqm.pipeline.config import load_config_file, validate

BACKBONE = "tf_efficientnet_lite0"
TIMING = ["seconds", "data_wait"]  # per-epoch log columns that measure time, not the model
ARCH = {"head": "mlp", "hidden": 32, "dropout": 0.1, "gate": True, "gate_reduction": 8}
CFG = FinetuneConfig(epochs=5, lr_backbone=1e-4, lr=1e-3, weight_decay=1e-4, batch_size=4, crop=64, crops_per_epoch=2,
                     loss="smooth_l1", eps=0.3, adv_weight=1.0, sens_weight=0.5, kd_weight=1.0, noise_form="add", seed=3,
                     device="cpu", channels_last=True, freeze_bn_stats=True, std_floor=0.1)


def textured(path: Path, seed: int, blur: float) -> Path:
    """An 80x80 smooth random texture, Gaussian-blurred by ``blur`` pixels."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).resize((80, 80), Image.BICUBIC)
    fine = rng.normal(0, 40, (80, 80, 3))
    img = Image.fromarray(np.clip(np.asarray(coarse) + fine, 0, 255).astype(np.uint8))
    img.filter(ImageFilter.GaussianBlur(float(blur))).save(path)
    return path


def table(tmp_path: Path, prefix: str, seeds: range, blurs: np.ndarray, column: str) -> pd.DataFrame:
    paths = [str(textured(tmp_path / f"{prefix}{s}.png", s, b)) for s, b in zip(seeds, blurs, strict=True)]
    return pd.DataFrame({"image_id": [f"{prefix}{s}" for s in seeds], "path": paths, column: 1 - blurs / 3})


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "lite0.pth"
    convert_package_weights(BACKBONE, out)
    return out


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine torch's spinning threads make this test ~15x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # fine-tunes Lite0
@pytest.mark.usefixtures("one_thread")
def test_finetune_trains_the_backbone_with_every_loss_term(lite0: Path, tmp_path: Path) -> None:
    train = table(tmp_path, "t", range(8), np.linspace(0, 3, 8), "score")
    pool = table(tmp_path, "p", range(100, 104), np.array([0.5, 1.5, 2.5, 0.0]), "teacher_score")
    memory = pd.concat([train, pool], ignore_index=True)  # teacher-labelled entries join the bank
    partners = np.stack([np.arange(8)[::-1], 8 + np.arange(8) % 4], axis=1)  # two partners per image

    model, history = finetune(BACKBONE, lite0, ARCH, CFG, train, partners, pool, memory)
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]
    assert (history[["loss_adv", "loss_sens", "loss_kd", "loss_clean"]] > 0).all().all()
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]

    pretrained = torch.load(lite0, weights_only=True)
    state = model.descriptor.backbone.state_dict()
    assert not torch.equal(state["conv_stem.weight"], pretrained["conv_stem.weight"])  # gradients reach the stem
    changed = [k for k, v in state.items() if v.is_floating_point() and "running" not in k
               and not torch.equal(v, pretrained[k])]
    assert len(changed) > 0.9 * sum(1 for k in state if "running" not in k and state[k].is_floating_point())
    assert all(torch.equal(v, pretrained[k]) for k, v in state.items() if "running" in k)  # frozen BN stats

    recipe = CropRecipe(n=2, size=64, seed=0)
    scores = predict(model, train, recipe, batch_size=8)
    assert scores.shape == (8,) and np.isfinite(scores).all()
    save(model, tmp_path / "ft.pt", BACKBONE)
    loaded = load(tmp_path / "ft.pt")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    np.testing.assert_allclose(predict(loaded, train, recipe, batch_size=8), scores, rtol=0, atol=1e-6)

    again, history_again = finetune(BACKBONE, lite0, ARCH, CFG, train, partners, pool, memory)
    pd.testing.assert_frame_equal(history.drop(columns=TIMING), history_again.drop(columns=TIMING))
    np.testing.assert_array_equal(predict(again, train, recipe, batch_size=8), scores)
    _, other_seed = finetune(BACKBONE, lite0, ARCH, replace(CFG, seed=4, epochs=1), train, partners[:, 0], pool)
    assert other_seed["loss"].iloc[0] != history["loss"].iloc[0]


@pytest.mark.usefixtures("one_thread")
def test_finetune_trains_a_decoder_over_the_top_from_its_block(lite0: Path, tmp_path: Path) -> None:
    train = table(tmp_path, "t", range(6), np.linspace(0, 3, 6), "score")
    arch = {**ARCH, "head": "decoder", "hidden": 16, "heads": 2, "depth": 1, "query": "learned",
            "queries": 1, "mlp_ratio": 2}
    cfg = replace(CFG, epochs=2, kd_weight=0.0, from_block=6)
    model, history = finetune(BACKBONE, lite0, arch, cfg, train, np.arange(6)[::-1].copy())
    assert (history[["loss_adv", "loss_sens", "loss_clean"]] > 0).all().all()
    assert model.quality.spec["head"] == "decoder" and model.quality.spec["partial"]["from_block"] == 6
    pretrained = torch.load(lite0, weights_only=True)
    assert torch.equal(model.descriptor.stem[0].weight, pretrained["conv_stem.weight"])  # below the block: frozen
    assert torch.equal(model.descriptor.blocks[5][0].conv_pw.weight, pretrained["blocks.5.0.conv_pw.weight"])
    assert not torch.equal(model.quality.top.head[0].weight, pretrained["conv_head.weight"])  # the top trains
    recipe = CropRecipe(n=2, size=64, seed=0)
    scores = predict(model, train, recipe, batch_size=8)
    save(model, tmp_path / "ft.pt", BACKBONE)
    np.testing.assert_allclose(predict(load(tmp_path / "ft.pt"), train, recipe, batch_size=8), scores, atol=1e-6)


def test_fine_tune_settings_are_the_students_with_the_finetune_section_over_them(tmp_path: Path) -> None:
    """The loss settings come from the student, ``finetune.crops_per_epoch`` (and epochs, lr_head, ...) replace the
    student's, ``partial.from_block`` reaches decoders only; fine-tuning draws at least one crop per image."""
    config = load_config_file(REPO / "config/config.yaml")
    validate(config)
    student, section = config["student"], config["finetune"]
    cfg = student_config(student, section, 224)
    assert cfg.crops_per_epoch == section["crops_per_epoch"] != student["train"]["crops_per_epoch"]
    assert (cfg.lr, cfg.epochs, cfg.batch_size) == (section["lr_head"], section["epochs"], section["batch_size"])
    assert (cfg.noise_form, cfg.precision) == (student["matching"]["noise_form"], student["train"]["precision"])
    assert cfg.from_block is None and cfg.crop == 224
    assert student_config(student, section, 224, config["partial"]).from_block == config["partial"]["from_block"]
    train = table(tmp_path, "t", range(2), np.array([0.0, 1.0]), "score")
    with pytest.raises(ValueError, match="crops_per_epoch: fine-tuning draws its crops at random"):
        finetune(BACKBONE, "none", ARCH, replace(cfg, crops_per_epoch=0), train)


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ``test_vit`` (160 px crops, width 64, 6 blocks) saved as a state dict in timm layout."""
    from qfm_iqm.features.backbone import create_backbone

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("vit") / "test_vit.pth"
    torch.save(create_backbone(VIT, "none").state_dict(), out)
    return out


VIT = "test_vit"
VIT_ARCH = {**ARCH, "head": "decoder", "hidden": 32, "dropout": 0.0, "heads": 2, "depth": 1, "query": "cls",
            "queries": 1, "mlp_ratio": 2}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("from_block", [0, 3])
def test_finetune_trains_the_deiqt_decoder_over_vit_tokens(tiny_vit: Path, tmp_path: Path, from_block: int) -> None:
    """The ViT's tokens, class token first, feed the decoder with the CLS query; partner tokens are the noise; the
    encoder trains from ``from_block`` (0: the embedding too) and the rest stays as loaded."""
    train = table(tmp_path, "t", range(6), np.linspace(0, 3, 6), "score")
    cfg = replace(CFG, epochs=2, kd_weight=0.0, crop=160, from_block=from_block)
    model, history = finetune(VIT, tiny_vit, VIT_ARCH, cfg, train, np.arange(6)[::-1].copy())
    assert (history[["loss_adv", "loss_sens", "loss_clean"]] > 0).all().all()
    spec = model.quality.spec
    assert spec["query"] == "cls" and spec["tokens"] == 101 and spec["in_dim"] == 64  # 10 x 10 patches + CLS
    loaded = torch.load(tiny_vit, weights_only=True)
    embedding = model.descriptor.vit.patch_embed.proj.weight
    assert torch.equal(embedding, loaded["patch_embed.proj.weight"]) == (from_block > 0)
    assert not torch.equal(model.quality.top.blocks[-1].mlp.fc2.weight, loaded["blocks.5.mlp.fc2.weight"])
    recipe = CropRecipe(n=1, size=160, seed=0)
    scores = predict(model, train, recipe, batch_size=4)
    save(model, tmp_path / "ft.pt", VIT)
    np.testing.assert_allclose(predict(load(tmp_path / "ft.pt"), train, recipe, batch_size=4), scores, atol=1e-6)
