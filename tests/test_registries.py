"""The named registries: one entry per name, unknown names answered with the known ones."""

from __future__ import annotations

import pytest
from conftest import imported_modules

from qfm_iqm.registry import Registry, UnknownName


class MLP:
    pass


def _heads() -> Registry[type]:
    heads: Registry[type] = Registry("head")
    heads.register("mlp")(MLP)
    heads.add("linear", int)
    return heads


def test_register_returns_the_object_and_keeps_the_registration_order() -> None:
    heads: Registry[type] = Registry("head")

    @heads.register("mlp")
    class Decorated:
        pass

    assert heads["mlp"] is Decorated and heads.add("linear", int) is int  # not None: the class itself
    assert list(heads) == ["mlp", "linear"] and heads.names() == ["linear", "mlp"] and len(heads) == 2
    assert "mlp" in heads and "decoder" not in heads and heads.get("decoder") is None


def test_a_name_registered_twice_is_refused_naming_the_kind_and_the_first_entry() -> None:
    heads = _heads()
    with pytest.raises(ValueError, match=r"^head 'mlp' is already registered \(by test_registries\.MLP\)$"):
        heads.add("mlp", float)
    assert heads["mlp"] is MLP  # the first stays


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownName) as err:
        _heads()["decoder"]
    assert isinstance(err.value, KeyError)
    assert str(err.value) == "unknown head 'decoder'; known: ['linear', 'mlp']"


def test_the_registry_imports_nothing_from_the_package() -> None:
    root = {"qfm_iqm", "qfm_iqm.version"}  # the package's root, which Python imports first, and its version
    assert {m for m in imported_modules("qfm_iqm.registry") if m.startswith("qfm_iqm")} == {*root, "qfm_iqm.registry"}
