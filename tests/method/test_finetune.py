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

from qfm_iqm.evaluation.sensitivity import noise_sensitivity
from qfm_iqm.features.extract import CropRecipe
from qfm_iqm.features.weights import convert_package_weights
from qfm_iqm.io import read_rgb
from qfm_iqm.method.finetune import (
    FinetuneConfig,
    build_model,
    finetune,
    init_decoder,
    load,
    optimiser,
    parameter_groups,
    predict,
    save,
    scoring_recipe,
    student_config,
)
from qfm_iqm.method.heads import DecoderHead
from qfm_iqm.method.partial import partial_spec
from qfm_iqm.method.train import new_totals, optimise
from qfm_iqm.settings import load_config_file, validate

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
    assert student_config(student, section, 224, partial_spec(config)).from_block == config["partial"]["from_block"]
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


# DEIQT's recipe (config/paper.yaml): its schedule, optimiser groups, clipping, initialisation and test crops.
DEIQT = replace(CFG, lr=2e-4, lr_backbone=2e-4, weight_decay=0.05, noise_form="mix", schedule="warmup_step",
                warmup_epochs=3, warmup_lr=2e-7, decay_epochs=3, decay_rate=0.1, min_lr=2e-7, clip_grad_norm=5.0,
                decay_exemptions=True, head_init="trunc_normal")


def _rates(cfg: FinetuneConfig, steps_per_epoch: int, model: torch.nn.Module | None = None) -> list[float]:
    """The learning rate of every step of ``cfg.epochs`` epochs, as the optimiser sees it when it steps."""
    model = model or torch.nn.Linear(2, 1)
    opt, sched = optimiser(cfg, [{"params": list(model.parameters()), "lr": cfg.lr, "weight_decay": 0.0}],
                           steps_per_epoch)
    rates = []
    for _ in range(cfg.epochs * steps_per_epoch):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_deiqt_schedule_warms_up_then_divides_by_ten_every_three_epochs_as_timm_steps_it() -> None:
    from timm.scheduler.step_lr import StepLRScheduler

    rates = _rates(replace(DEIQT, epochs=9), 10)
    assert rates[0] == pytest.approx(2e-7)  # the first step
    assert rates[29] == pytest.approx(2e-7 + 29 * (2e-4 - 2e-7) / 30) and rates[30] == pytest.approx(2e-4)  # warmed up
    assert rates[59] == pytest.approx(2e-4) and rates[60] == pytest.approx(2e-5)  # the first decay, 3 epochs later
    assert rates[89] == pytest.approx(2e-5)
    reference = StepLRScheduler(torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=2e-4), decay_t=30,
                                decay_rate=0.1, warmup_t=30, warmup_lr_init=2e-7, t_in_epochs=False)
    np.testing.assert_allclose(rates, [reference._get_lr(t)[0] for t in range(90)], rtol=1e-9)
    assert min(_rates(replace(DEIQT, epochs=30, decay_epochs=1), 2)) == pytest.approx(2e-7)  # the floor
    assert max(_rates(replace(DEIQT, schedule="onecycle", epochs=2), 10)) == pytest.approx(2e-4)


def test_deiqt_optimiser_spares_biases_norms_embeddings_tokens_and_queries_from_weight_decay(tiny_vit: Path) -> None:
    from qfm_iqm.features.backbone import create_backbone

    model = build_model(create_backbone(VIT, tiny_vit), VIT, {**VIT_ARCH, "gate": False}, 160, 0, 1.0)
    groups = parameter_groups(model, DEIQT)
    names = {id(p): n for n, p in model.named_parameters()}
    spared = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] == 0.05 for p in g["params"]}
    assert spared | decayed == set(names.values()) and not spared & decayed and {g["lr"] for g in groups} == {2e-4}
    assert {"descriptor.vit.pos_embed", "descriptor.vit.cls_token", "quality.quality.head.query",
            "quality.quality.head.position", "descriptor.vit.patch_embed.proj.bias",
            "quality.top.blocks.0.norm1.weight", "quality.quality.head.out.bias"} <= spared
    assert {"descriptor.vit.patch_embed.proj.weight", "quality.top.blocks.0.attn.qkv.weight",
            "quality.quality.head.project.weight", "quality.quality.head.out.weight"} <= decayed
    everything = parameter_groups(model, replace(DEIQT, decay_exemptions=False))  # the CPU recipe: decay nearly all
    assert {names[id(p)] for g in everything if g["weight_decay"] == 0 for p in g["params"]} == {
        "quality.quality.head.query", "quality.quality.head.position"}


def test_deiqt_initialises_the_decoders_linear_layers_truncated_normal() -> None:
    head = DecoderHead(64, hidden=96, dropout=0.0, tokens=5, heads=2, depth=1, query="learned", queries=6, mlp_ratio=4)
    model = torch.nn.Sequential(head)
    init_decoder(model)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) >= 4 and all(m.bias is None or not m.bias.any() for m in linears)
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)  # (truncated at +-2, as timm and DEIQT: no cut)
    with pytest.raises(ValueError, match="finetune.head_init 'trunc_normal'.*no decoder"):
        init_decoder(torch.nn.Sequential(torch.nn.Linear(2, 1)))


def test_clipping_bounds_an_exploding_gradient() -> None:
    model = torch.nn.Linear(4, 1)
    seen = []
    for clip in (5.0, None):
        opt = torch.optim.AdamW(model.parameters())
        opt.register_step_pre_hook(lambda o, *_: seen.append(
            torch.linalg.vector_norm(torch.stack([p.grad.norm() for g in o.param_groups for p in g["params"]])).item()))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        totals = new_totals()
        optimise(opt, sched, {"loss": 1e6 * model(torch.ones(8, 4)).pow(2).sum()}, totals, 1, clip)
        if clip:
            assert totals["grad_norm_max"].item() > 1e4  # the norm before clipping is logged
    assert seen[0] <= 5.0 + 1e-4 and seen[1] > 1e4


def test_a_float16_step_clips_the_unscaled_gradients() -> None:
    """Under float16 (``amp`` on CUDA) the loss is scaled: the gradients are unscaled before they are clipped, and the
    step is taken (the grad scaler works on the CPU as on CUDA)."""
    model, seen = torch.nn.Linear(4, 1), []
    before = model.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters())
    opt.register_step_pre_hook(lambda o, *_: seen.append(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    optimise(opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0),
             {"loss": 1e3 * model(torch.ones(8, 4)).pow(2).sum()}, new_totals(), 1, 5.0, scaler)
    assert seen[0] == pytest.approx(5.0, rel=1e-4) and not torch.equal(model.weight, before)  # clipped once unscaled


class MeanPixel(torch.nn.Module):
    """A 'model' that scores a crop by its mean pixel value."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))


def test_test_crops_are_averaged(tmp_path: Path) -> None:
    meta = table(tmp_path, "t", range(3), np.array([0.0, 1.0, 2.0]), "score")
    recipe = scoring_recipe({"n": 2, "size": 32, "seed": 0}, 10)
    assert recipe.n == 10 and scoring_recipe({"n": 2, "size": 32, "seed": 0}, None).n == 2
    expected = [np.mean([np.asarray(c, dtype=np.float64).mean() / 255 for c in recipe.crops(read_rgb(p), i)])
                for p, i in zip(meta["path"], meta["image_id"], strict=True)]
    np.testing.assert_allclose(predict(MeanPixel(), meta, recipe, batch_size=7), expected, rtol=1e-5)


@pytest.mark.slow  # fine-tunes a tiny ViT for 3 epochs
@pytest.mark.usefixtures("one_thread")
def test_deiqt_recipe_trains_the_samples_and_schedule_it_says(tiny_vit: Path, tmp_path: Path) -> None:
    train = table(tmp_path, "t", range(6), np.linspace(0, 3, 6), "score")
    cfg = replace(DEIQT, epochs=3, warmup_epochs=1, decay_epochs=1, crops_per_epoch=3, kd_weight=0.0, crop=160,
                  from_block=0, precision="amp")
    _, history = finetune(VIT, tiny_vit, VIT_ARCH, cfg, train, np.arange(6)[::-1].copy())
    assert history["samples"].tolist() == [18] * 3 and history["steps"].tolist() == [5] * 3  # 6 images x 3 crops / 4
    np.testing.assert_allclose(history["lr_start"], [2e-7, 2e-4, 2e-5], rtol=1e-9)
    assert (history["grad_norm_max"] > 0).all()


def test_a_fine_tuned_models_sensitivity_is_probed_with_each_noise(tiny_vit: Path, tmp_path: Path) -> None:
    """Claim 2 on fine-tuned models: the prediction shift when a partner's tokens are superimposed, per probe."""
    from qfm_iqm.features.backbone import create_backbone

    meta = table(tmp_path, "t", range(4), np.linspace(0, 3, 4), "score")
    model = build_model(create_backbone(VIT, tiny_vit), VIT, VIT_ARCH, 160, 0, 1.0)
    model.quality.fit_normaliser(torch.randn(8, 101 * 64), 0.1)
    probes = {"additive": {"eps": 0.3, "form": "add"}, "training": {"eps": 0.5, "form": "mix"}}
    table_ = noise_sensitivity(model, meta, CropRecipe(n=2, size=160, seed=0), np.array([3, 2, 1, 0]), probes, 0.2)
    assert table_["probe"].tolist() == ["additive", "training"] and table_["form"].tolist() == ["add", "mix"]
    assert table_["eps"].tolist() == [0.3, 0.5] and (table_["relative_shift"] > 0).all()
    still = noise_sensitivity(model, meta, CropRecipe(n=2, size=160, seed=0), np.arange(4), probes, 0.2)
    assert still.loc[1, "relative_shift"] == pytest.approx(0, abs=1e-5)  # mixed with itself: nothing moves
