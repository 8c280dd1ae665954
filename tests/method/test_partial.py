"""Partial fine-tune of a backbone's top on cached activations, with the decoder head: the cut, the tokens,
training and round trips, a sensitivity sweep, calibration in batches, bf16."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from conftest import REPO

from qfm_iqm.features.backbone import create_backbone
from qfm_iqm.features.cache import FeatureSet
from qfm_iqm.io import InputError
from qfm_iqm.method import train
from qfm_iqm.method.checkpoint import load_model, save_model
from qfm_iqm.method.model import QualityModel
from qfm_iqm.method.partial import (
    ACTIVATION,
    EARLY,
    BackboneBottom,
    BackboneTop,
    PartialSpec,
    cut,
    model_for,
    partial_spec,
)
from qfm_iqm.pipeline.stages.common import model_args
from qfm_iqm.settings import load_config_file, validate

BACKBONE = "tf_efficientnet_lite0"
PARTIAL = PartialSpec(from_block=6, top_lr_scale=0.1)
ARCH = {"head": "decoder", "hidden": 16, "dropout": 0.0, "gate": True, "gate_reduction": 8, "heads": 2, "depth": 1,
        "query": "learned", "queries": 1, "mlp_ratio": 2}


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone(BACKBONE, "none")


def _packed(backbone: torch.nn.Module, images: int = 3, crops: int = 2, size: int = 64) -> FeatureSet:
    """Cached bottom activations of random crops, as ``extract_activations`` writes them."""
    torch.manual_seed(1)
    bottom = BackboneBottom(backbone, PARTIAL.from_block)
    with torch.no_grad():
        packed = bottom(torch.randn(images * crops, 3, size, size)).numpy()
    early = 2 * (16 + 24 + 40 + 112)
    return FeatureSet(np.array([f"i{k}" for k in range(images)]), packed.reshape(images, crops, -1).astype(np.float16),
                      [ACTIVATION, EARLY], [packed.shape[-1] - early, early])


def test_bottom_then_top_is_the_whole_backbone(backbone: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 96, 96)
    bottom, top = BackboneBottom(backbone, 6), BackboneTop(backbone, 6)
    with torch.no_grad():
        packed = bottom(x)
        tokens = top(packed[:, : 192 * 3 * 3].reshape(2, 192, 3, 3))
        whole = backbone.forward_features(x)
    assert torch.allclose(tokens, whole.flatten(2).transpose(1, 2), atol=1e-5)
    # the early statistics are the means and stds of the stages before the cut
    with torch.no_grad():
        stage0 = backbone.blocks[0](backbone.bn1(backbone.conv_stem(x)))
    assert torch.allclose(packed[:, 192 * 9: 192 * 9 + 16], stage0.mean((2, 3)), atol=1e-5)


def test_the_top_keeps_batchnorm_statistics_in_training(backbone: torch.nn.Module) -> None:
    top = BackboneTop(create_backbone(BACKBONE, "none"), 6).train()
    before = top.head[1].running_mean.clone()
    top(torch.randn(4, 192, 2, 2) * 5 + 3)
    assert torch.equal(top.head[1].running_mean, before)
    assert any(m.training for m in top.modules())


def test_a_cut_outside_the_backbone_or_a_wrong_cache_is_a_clear_error(backbone: torch.nn.Module) -> None:
    with pytest.raises(InputError, match="partial.from_block: 7 is not a block index"):
        BackboneTop(backbone, 7)
    pooled = FeatureSet(np.array(["a"]), np.zeros((1, 2, 8), np.float32), ["final_mean"], [8])
    with pytest.raises(InputError, match="head 'decoder' reads cached activations"):
        model_for(ARCH, pooled, BACKBONE, "none", PARTIAL)
    with pytest.raises(ValueError, match="head 'mlp' reads one vector per crop"):
        QualityModel(8, head="mlp", tokens=4, hidden=512, dropout=0.1)


def test_the_decoder_reads_the_tokens_and_the_early_token(backbone: torch.nn.Module) -> None:
    feats = _packed(backbone)
    model = model_for(ARCH, feats, BACKBONE, "none", PARTIAL).eval()
    x = torch.from_numpy(feats.features).float()
    tokens = model.tokens(x)
    # disjoint channels: spatial tokens are 1280 features then zeros, the early token zeros then 384 statistics
    assert tokens.shape == (3, 2, 2 * 2 + 1, 1280 + 384)
    assert torch.equal(tokens[..., -1, 1280:], x[..., -384:]) and not tokens[..., -1, :1280].any()
    assert not tokens[..., :-1, 1280:].any()
    model.fit_normaliser(x.reshape(6, -1))
    with torch.no_grad():
        base = model(x)
        changed = x.clone()
        changed[..., -384:] += 3.0  # only the early statistics
    assert base.shape == (3, 2) and not torch.allclose(model(changed), base)


def test_partial_fine_tune_trains_the_top_and_round_trips(backbone: torch.nn.Module, tmp_path: Path) -> None:
    feats = _packed(backbone, images=8)
    model = model_for(ARCH, feats, BACKBONE, "none", PARTIAL)
    groups = model.param_groups(1e-3, 0.1)
    assert groups[-1]["lr"] == pytest.approx(1e-4) and len(groups[-1]["params"]) == len(list(model.top.parameters()))
    start = [p.detach().clone() for p in model.top.parameters()]
    y = np.linspace(0.1, 0.9, 8)
    cfg = train.TrainConfig(epochs=2, lr=1e-3, weight_decay=0.1, batch_size=4, loss="smooth_l1", adv_weight=1.0,
                            sens_weight=0.5, eps=0.3, noise_form="add", crops_per_epoch=1)
    history = train.train(model, feats.features, y, cfg, partners=np.arange(8)[::-1].copy())
    assert history["loss_sens"].gt(0).all()
    assert any(not torch.equal(a, b) for a, b in zip(start, model.top.parameters(), strict=True))
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert partial_spec(loaded.spec) == PARTIAL
    np.testing.assert_array_equal(train.predict_crops(loaded, feats.features), train.predict_crops(model, feats.features))


def test_the_partial_spec_is_the_config_sections_and_reaches_the_model() -> None:
    """One ``PartialSpec`` from the config's ``partial`` section: what the workflow's model settings carry to
    ``model_for`` (none for pooled heads)."""
    config = load_config_file(REPO / "config/config.yaml")
    validate(config)
    spec = partial_spec(config)
    assert spec == PartialSpec(config["partial"]["from_block"], config["partial"]["top_lr_scale"])
    settings = {"backbone": config["backbone"], "partial": config["partial"]}  # common.smk's model_settings
    assert model_args(settings, NS())["partial"] == spec and partial_spec({}) is None and model_args({}, NS()) == {}


def test_a_checkpoint_that_recorded_the_partial_section_as_a_dict_still_loads(backbone: torch.nn.Module,
                                                                               tmp_path: Path) -> None:
    feats = _packed(backbone, images=4)
    model = model_for(ARCH, feats, BACKBONE, "none", PARTIAL).eval()
    old = {**model.spec, "partial": {"backbone": BACKBONE, "from_block": 6, "activation_size": feats.block_sizes[0],
                                     "early_size": feats.block_sizes[1], "top_lr_scale": 0.1}}  # as saved before
    torch.save({"spec": old, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert partial_spec(loaded.spec) == PARTIAL and loaded.top_lr_scale == 0.1
    np.testing.assert_array_equal(train.predict_crops(loaded, feats.features), train.predict_crops(model, feats.features))


def test_the_sweep_encodes_a_decoder_models_input_once_and_matches_each_point(backbone: torch.nn.Module) -> None:
    from qfm_iqm.evaluation.sensitivity import matched_partners, sensitivity, sweep

    feats = _packed(backbone, images=8)
    model = model_for(ARCH, feats, BACKBONE, "none", PARTIAL)
    model.fit_normaliser(torch.from_numpy(feats.features.reshape(-1, feats.features.shape[-1])).float())
    score = np.linspace(0, 1, 8)
    semantic = np.random.default_rng(0).normal(size=(8, 4))
    calls = []
    encode = model.encode
    model.encode = lambda x: calls.append(len(x)) or encode(x)
    table = sweep({"decoder": model}, {"decoder": feats.features}, score, feats.image_id, semantic, [0.1, 0.3], [0.2, 0.5],
                  k_fallback=2, large_gap=0.2)
    assert calls == [8] and len(table) == 4
    model.encode = encode
    partners = matched_partners(feats.image_id, score, semantic, 0.3, 2)
    alone = sensitivity(model, feats.features, score, partners, 0.5, 0.2, None, "add")
    row = table[(table["tau"] == 0.3) & (table["eps"] == 0.5)].iloc[0]
    assert row["mean_abs_shift"] == pytest.approx(alone["mean_abs_shift"], rel=1e-5) and alone["mean_abs_shift"] > 0


def test_calibration_in_batches_fits_the_map_of_all_tokens_at_once(backbone: torch.nn.Module) -> None:
    """``PartialModel.calibrate`` predicts a few samples at a time (a training part's tokens never exist at once)
    and fits the same output map as ``QualityModel.calibrate`` on the tokens of every sample."""
    feats = _packed(backbone, images=8, crops=3)
    model = model_for(ARCH, feats, BACKBONE, "none", PARTIAL)
    x = torch.from_numpy(feats.features.reshape(-1, feats.features.shape[-1])).float()
    model.fit_normaliser(x)
    with torch.no_grad():
        y = 0.3 + 2 * model.eval()(x) + 0.01 * torch.randn(len(x))  # a map to find: scale about 2
    model.calibrate(x, y, batch_size=5)
    batched = model.quality.out_scale.clone(), model.quality.out_shift.clone()
    assert float(batched[0]) != 1.0  # a map was fitted
    model.quality.calibrate(model._batched_tokens(x), y)
    torch.testing.assert_close((model.quality.out_scale, model.quality.out_shift), batched, rtol=1e-5, atol=1e-6)


def test_bf16_partial_fine_tune_stays_within_tolerance_of_fp32(backbone: torch.nn.Module) -> None:
    """``precision: bf16`` on the trainable top and decoder (every loss term) changes the arithmetic, not the
    model: after 9 steps, predictions rank the crops like fp32's (Spearman >= 0.99; measured 0.997) and differ by at
    most 0.02 (measured 0.009). Longer runs drift further apart, as any change of rounding does; whether bf16 trains
    as good a model is a question for the carve-outs (docs/benchmarks.md, "Throughput")."""
    from scipy import stats

    feats = _packed(backbone, images=12)
    y = np.linspace(0.1, 0.9, 12)
    preds = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = model_for(ARCH, feats, BACKBONE, "none", PARTIAL)
        cfg = train.TrainConfig(epochs=3, lr=1e-3, weight_decay=0.1, batch_size=8, loss="smooth_l1", adv_weight=1.0,
                                sens_weight=0.5, eps=0.3, kd_weight=1.0, noise_form="add", precision=precision)
        train.train(model, feats.features, y, cfg, x_pool=feats.features[::-1].copy(), y_pool=np.full((12, 2), 0.5),
                    partners=np.arange(12)[::-1].copy())
        preds[precision] = train.predict_crops(model, feats.features).ravel()
    assert not np.array_equal(preds["fp32"], preds["bf16"])  # bf16 really ran
    assert stats.spearmanr(preds["fp32"], preds["bf16"])[0] >= 0.99
    assert np.abs(preds["fp32"] - preds["bf16"]).max() <= 0.02


@pytest.mark.parametrize("from_block", [0, 4])
def test_a_vit_is_cut_into_embedding_and_top_that_give_its_tokens(from_block: int) -> None:
    torch.manual_seed(0)
    whole = create_backbone("test_vit", "none")
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        expected = whole.forward_features(x)
        bottom, top = cut(whole, from_block)
        packed = bottom(x)
        tokens = top(packed.reshape(2, *top.input_shape(packed.shape[1])))
    assert bottom.early_size == 0 and top.cls_first and len(top.blocks) == 6 - from_block
    torch.testing.assert_close(tokens, expected)
    with pytest.raises(InputError, match="0..5"):
        cut(create_backbone("test_vit", "none"), 6)
    with pytest.raises(InputError, match="1..6"):
        cut(create_backbone(BACKBONE, "none"), 0)  # a CNN's early token needs a stage below the cut


def test_the_cls_query_needs_a_class_token(backbone: torch.nn.Module) -> None:
    with pytest.raises(InputError, match="query 'cls'.*tf_efficientnet_lite0 has none"):
        model_for({**ARCH, "query": "cls"}, _packed(backbone), BACKBONE, "none", PARTIAL)


def test_cached_vit_tokens_train_under_the_cls_query() -> None:
    """The partial path on a ViT: cached bottom tokens, a trained top, the decoder's CLS query, partner noise."""
    torch.manual_seed(0)
    bottom, _ = cut(create_backbone("test_vit", "none"), 4)
    with torch.no_grad():
        packed = bottom(torch.randn(6, 3, 160, 160)).numpy().reshape(3, 2, -1).astype(np.float16)
    feats = FeatureSet(np.array(["a", "b", "c"]), packed, [ACTIVATION, EARLY], [packed.shape[-1], 0])
    model = model_for({**ARCH, "query": "cls"}, feats, "test_vit", "none", PartialSpec(4, 0.1))
    x = torch.from_numpy(packed).float()
    assert model.tokens(x).shape == (3, 2, 101, 64) and len(model.top.blocks) == 2
    clean, noisy = model(x), model(x, noise=x.flip(0), eps=0.5, form="mix")
    assert clean.shape == (3, 2) and not torch.allclose(clean, noisy)
