"""The registries of strategies by name: each name written once, in the registry; every entry
resolves to its object, and a class's ``name`` is its registry key."""

import importlib

import pytest

from xlvlm.lazy import Registry

REGISTRY_MODULES = ("xlvlm.concepts.registry", "xlvlm.steer.registry", "xlvlm.shift.registry",
                    "xlvlm.patching.registry")


def _registries() -> list[tuple[str, Registry]]:
    return [(f"{module}.{attribute}", value) for module in REGISTRY_MODULES
            for attribute, value in vars(importlib.import_module(module)).items() if isinstance(value, Registry)]


def test_the_registry_modules_hold_the_lazy_registries():
    assert {name for name, _ in _registries()} == {
        "xlvlm.concepts.registry.METHODS", "xlvlm.concepts.registry.LOADED", "xlvlm.steer.registry.AGGREGATORS",
        "xlvlm.steer.registry.OPERATORS", "xlvlm.patching.registry.METHODS"}


@pytest.mark.parametrize("where, registry", _registries(), ids=[name for name, _ in _registries()])
def test_every_entry_resolves_to_an_object_named_by_its_key(where, registry):
    for key in registry:
        obj = registry[key]
        assert callable(obj), f"{where}[{key!r}]"
        assert registry.name_of(obj) == key
        if isinstance(obj, type):
            assert obj.name == key, f"{where}[{key!r}] is {obj.__name__}, whose name is {obj.name!r}"


def test_a_registry_reads_names_without_importing_and_imports_on_lookup():
    registry = Registry({"dumps": "json:dumps", "loaded": len})
    assert list(registry) == ["dumps", "loaded"] and "dumps" in registry and "nope" not in registry
    assert registry._entries["dumps"] == "json:dumps"  # not imported by the reads above
    import json

    assert registry.name_of(json.dumps) == "dumps"  # found by its place before the lookup
    assert registry["dumps"] is json.dumps and registry["loaded"] is len
    assert registry.name_of(print) is None
    registry["mine"] = "json:loads"
    assert dict(registry.items())["mine"] is json.loads
    with pytest.raises(KeyError):
        registry["nope"]


def test_an_estimator_takes_its_name_from_the_registry():
    from xlvlm.concepts import SemiNMF
    from xlvlm.concepts.estimators.online import OnlineEstimator

    class Tuned(SemiNMF):
        pass

    assert SemiNMF.name == "snmf" and Tuned.name == "snmf"  # a subclass registered nowhere keeps its parent's
    assert OnlineEstimator.name is None  # a shared base: no method of its own


def test_the_choices_front_door_reads_every_registry_and_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, xlvlm.choices as c\n"
            "print(c.CONCEPT_METHODS == tuple(__import__('xlvlm.concepts.registry', fromlist=['x']).METHODS))\n"
            "print(c.STEER_METHODS, c.PATCH_METHODS, c.EVALUATION_TASKS)\n"
            "print([m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules])")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[0] == "True"
    assert lines[1] == ("('mean-diff', 'mean-of-shifts', 'pca', 'concept') ('exact', 'attribution') "
                        "('vqa', 'caption', 'pope', 'safety')")
    assert lines[2] == "[]"
