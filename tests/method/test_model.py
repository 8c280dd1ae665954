"""The quality model: the semantic noise, each head's own keys, standardisation of the features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qfm_iqm.method.checkpoint import load_model
from qfm_iqm.method.heads import HEADS
from qfm_iqm.method.model import QualityModel

DECODER = {"heads": 2, "depth": 1, "queries": 1, "mlp_ratio": 2}  # what the schema fills in, but for the head count


def test_zero_noise_leaves_the_prediction_unchanged_and_noise_moves_it() -> None:
    model = QualityModel(6, head="mlp", hidden=8, dropout=0.0, gate=True, gate_reduction=8).eval()
    x, partner = torch.randn(4, 6), torch.randn(4, 6)
    with torch.no_grad():
        assert torch.allclose(model(x, noise=partner, eps=0.0, form="add"), model(x))
        assert not torch.allclose(model(x, noise=partner, eps=0.3, form="add"), model(x))
    with pytest.raises(KeyError, match="unknown noise form None"):
        model(x, noise=partner, eps=0.3)  # no default form: the schema's is not the paper's


def test_the_heads_are_registered_once_and_an_unknown_head_lists_them() -> None:
    assert HEADS.names() == ["decoder", "linear", "mlp"]
    with pytest.raises(KeyError, match=r"^unknown head 'transformer'; known: \['decoder', 'linear', 'mlp'\]$"):
        QualityModel(6, head="transformer", hidden=512, dropout=0.1)
    with pytest.raises(ValueError, match="head 'mlp' is already registered"):
        HEADS.register("mlp")(torch.nn.Identity)


def test_a_head_takes_its_own_keys_and_checkpoints_that_recorded_every_key_still_load(tmp_path) -> None:
    with pytest.raises(TypeError, match="heads"):
        QualityModel(6, head="mlp", heads=4, hidden=512, dropout=0.1)  # the decoder's key: an error, not swallowed
    with pytest.raises(TypeError, match="depth"):
        # the config fills it in, a caller gives it
        QualityModel(6, head="decoder", tokens=3, heads=2, query="learned", hidden=512, dropout=0.1)
    model = QualityModel(6, head="mlp", hidden=8, dropout=0.1)
    assert "heads" not in model.spec
    old = {**model.spec, "heads": 4, "depth": 1, "query": "learned"}  # what checkpoints recorded for every head
    torch.save({"spec": old, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").spec == model.spec


def test_a_decoder_checkpoint_from_before_queries_and_mlp_ratio_loads_as_one_query_and_ratio_2(tmp_path) -> None:
    model = QualityModel(4, head="decoder", hidden=8, tokens=3, query="learned", **DECODER, dropout=0.1)
    old = {k: v for k, v in model.spec.items() if k not in ("queries", "mlp_ratio")}
    torch.save({"spec": old, "state_dict": model.state_dict()}, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").spec == model.spec


def test_each_query_is_scored_and_the_score_is_their_mean() -> None:
    """DEIQT's read-out: several learned queries (each plus the CLS token) attend to the tokens through a feed-forward
    ``mlp_ratio`` x ``hidden`` wide; each is mapped to a score, and the score is their mean."""
    torch.manual_seed(0)
    head = HEADS["decoder"](4, hidden=8, dropout=0.0, tokens=5, query="cls", heads=2, depth=1, queries=6,
                            mlp_ratio=4).eval()
    assert head.query.shape == (1, 6, 8) and head.decoder.layers[0].linear1.out_features == 32
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        tokens = head.project(x) + head.position
        each = head.out(head.norm(head.decoder(head.query + tokens[:, :1], tokens[:, 1:])))
        assert each.shape == (2, 6, 1) and not torch.allclose(each[:, 0], each[:, 1], atol=1e-3)
        assert torch.allclose(head(x), each.mean(1), atol=1e-6)


def test_standardisation_is_safe_for_constant_and_near_constant_channels() -> None:
    """Channels constant on the training features standardise to 0, near-constant ones get the std floor, and
    values outside the training range are clipped; the old 1e-6 clamp gave z-scores of ~1e6 here."""
    rng = np.random.default_rng(0)
    train_x = rng.normal(size=(20, 3, 6))  # images x crops x channels, channels last (pooled or token features)
    train_x[..., 0] = 0.0  # a dead unit on the training part
    train_x[..., 1] = 1e-4 * rng.normal(size=(20, 3))  # nearly constant
    model = QualityModel(6, head="linear", dropout=0.0, hidden=512)
    model.fit_normaliser(torch.from_numpy(train_x))
    test_x = torch.from_numpy(rng.normal(size=(5, 3, 6)) * 50).float()  # every channel active, far out of range
    z = model.standardise(test_x)
    assert torch.isfinite(z).all() and (z[..., 0] == 0).all()
    train_z = model.standardise(torch.from_numpy(train_x).float())
    assert z.abs().max() <= train_z.abs().max() + 1e-5  # no test value beyond what the head saw in training
    assert train_z[..., 1].abs().max() < 1e-2  # floored at 0.1 x the median std, not blown up to unit scale
    assert torch.isfinite(model(test_x, noise=test_x.flip(0), eps=0.3, form="add")).all()
    trained = QualityModel(6, head="mlp", hidden=512, dropout=0.1)
    trained.fit_normaliser(torch.from_numpy(train_x), frozen=False)  # fine-tune mode: features move
    z = trained.standardise(test_x)
    assert torch.isfinite(z).all() and z.abs().max() > train_z.abs().max()  # not clipped
    assert (z[..., 0] != 0).all()  # a dead unit may come alive: floored, not clipped to 0
    typical = np.median(train_x.reshape(-1, 6).std(0, ddof=1)[1:])  # the median std of the varying channels
    assert float(trained.std[0]) == pytest.approx(0.1 * typical, rel=1e-5)


@pytest.mark.parametrize("query", ["cls", "pooled", "learned"])
def test_token_noise_is_added_or_mixed_after_standardisation(query: str) -> None:
    model = QualityModel(4, head="decoder", hidden=8, dropout=0.0, tokens=3, query=query, **DECODER).eval()
    x, partner = torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    model.fit_normaliser(torch.randn(50, 3, 4) * 2 + 1, frozen=False)
    z, zp = model.standardise(x), model.standardise(partner)
    with torch.no_grad():
        assert torch.allclose(model(x, partner, 0.3, "add"), model.head(z + 0.3 * zp).squeeze(-1))
        assert torch.allclose(model(x, partner, 0.3, "mix"), model.head(0.7 * z + 0.3 * zp).squeeze(-1))
        # a partner axis (k partners per sample) is averaged after standardisation
        two = torch.stack([partner, -partner], 1)
        assert torch.allclose(model(x, two, 0.3, "add"), model.head(z + 0.3 * model.standardise(two).mean(1)).squeeze(-1),
                              atol=1e-6)
    with pytest.raises(KeyError, match="unknown noise form"):
        model(x, partner, 0.3, "subtract")


@pytest.mark.parametrize("queries", [1, 3])
def test_the_cls_query_starts_from_the_first_token_and_attends_to_the_others(queries: int) -> None:
    """With the position embedding at its start (zeros) attention ignores token order: a learned query gives the same
    score for any order, while the CLS query changes when another token takes the first place, and not when the
    others are shuffled."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4)
    heads = {q: HEADS["decoder"](4, hidden=8, dropout=0.0, tokens=5, query=q, **{**DECODER, "queries": queries}).eval()
             for q in ("cls", "learned")}
    shuffled, swapped = x[:, [0, 3, 1, 4, 2]], x[:, [1, 0, 2, 3, 4]]
    with torch.no_grad():
        assert torch.allclose(heads["learned"](swapped), heads["learned"](x), atol=1e-6)
        assert torch.allclose(heads["cls"](shuffled), heads["cls"](x), atol=1e-6)
        assert not torch.allclose(heads["cls"](swapped), heads["cls"](x), atol=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        HEADS["decoder"](4, hidden=8, dropout=0.0, tokens=1, query="cls", **DECODER)
