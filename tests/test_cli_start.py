"""The command line starts without the heavy libraries, and its choices are the library's names."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "matplotlib")

PROBE = """
import contextlib, io, sys
from xlvlm.cli import build_parser, main
build_parser()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    codes = [main(argv) for argv in ({argvs})]
print(codes)
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("argvs", [
    "['--help'], ['extract', '--help'], ['steer', 'sweep', '--help'], ['concepts', '--help'], ['report', '--help']",
    "['extract', '--batch-size', '0'], ['steer', 'compute', '--method', 'nope'], ['concepts', '--device', 'tpu9']",
])
def test_help_and_argument_errors_import_neither_torch_nor_transformers(argvs):
    code = PROBE.format(argvs=argvs, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    codes, heavy = result.stdout.splitlines()
    assert set(eval(codes)) <= {0, 2} and heavy == "", f"exit codes {codes}; imported: {heavy}"


def test_the_package_imports_its_public_names_lazily():
    code = "import sys, xlvlm; print('torch' in sys.modules); xlvlm.SteeringVector; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_xlvlm_extract_is_the_function_next_to_the_features_package():
    import xlvlm
    import xlvlm.features.distributed  # noqa: F401
    from xlvlm.features import FeatureStore

    assert callable(xlvlm.extract) and xlvlm.extract.__name__ == "extract"
    assert xlvlm.FeatureStore is FeatureStore


@pytest.mark.parametrize("text", ["cpu", "cuda", "cuda:1", "cuda:10", "mps", "mps:0", "xpu", "meta", "cpu:0", "tpu9",
                                  "CUDA", "cuda:-1", "cuda:01", "cuda:x", " cpu", "cuda:", "gpu", ""])
def test_device_check_agrees_with_torch(text):
    """The device check runs without torch; torch.device is the reference it must agree with."""
    import argparse

    import torch

    from xlvlm.cli.validate import device

    try:
        torch.device(text)
        torch_accepts = True
    except (RuntimeError, ValueError):
        torch_accepts = False
    try:
        device(text)
        accepted = True
    except argparse.ArgumentTypeError:
        accepted = False
    assert accepted == torch_accepts


# (command, option) -> the registry whose names are its choices: (module, attribute)
REGISTRY_CHOICES = {
    ("xlvlm steer compute", "--method"): ("xlvlm.steer.registry", "AGGREGATORS"),
    ("xlvlm steer condition", "--method"): ("xlvlm.steer.registry", "CONDITION_METHODS"),
    ("xlvlm steer apply", "--operator"): ("xlvlm.steer.registry", "OPERATORS"),
    ("xlvlm steer sweep", "--operator"): ("xlvlm.steer.registry", "OPERATORS"),
    ("xlvlm steer calibrate", "--operator"): ("xlvlm.steer.registry", "OPERATORS"),
    ("xlvlm steer learn", "--objective"): ("xlvlm.steer.registry", "OBJECTIVES"),
    ("xlvlm steer calibrate", "--objective"): ("xlvlm.steer.registry", "OBJECTIVES"),
    ("xlvlm concepts", "--simple-activation"): ("xlvlm.concepts.registry", "SIMPLE_ACTIVATIONS"),
    ("xlvlm concepts", "--word-filter"): ("xlvlm.concepts.registry", "WORD_FILTERS"),
    ("xlvlm shift", "--word-filter"): ("xlvlm.concepts.registry", "WORD_FILTERS"),
    ("xlvlm shift", "--assignment"): ("xlvlm.shift.registry", "ASSIGNMENTS"),
    ("xlvlm shift", "--aggregate"): ("xlvlm.shift.registry", "AGGREGATES"),
    ("xlvlm shift", "--mas-by"): ("xlvlm.shift.registry", "MAS_RANKINGS"),
    ("xlvlm shift", "--concept-scale"): ("xlvlm.shift.registry", "CONCEPT_SCALES"),
    ("xlvlm patch", "--metric"): ("xlvlm.patching.registry", "METRICS"),
    ("xlvlm patch", "--method"): ("xlvlm.patching.registry", "METHODS"),
    ("xlvlm evaluate", "--task"): ("xlvlm.evaluation.tasks", "TASKS"),
}
# Options that take more than a registry's names (a path, an index, a comma list): their help lists them.
REGISTRY_HELP = {
    ("xlvlm concepts", "--method"): ("xlvlm.concepts.registry", "METHODS"),
    ("xlvlm shift", "--method"): ("xlvlm.concepts.registry", "METHODS"),
    ("xlvlm steer sweep", "--methods"): ("xlvlm.steer.registry", "AGGREGATORS"),
    **{(f"xlvlm steer {command}", "--positions"): ("xlvlm.steer.registry", "POSITION_RULES")
       for command in ("apply", "sweep", "calibrate")},
}
# Choices that belong to the command line's own apps, not to a library registry.
OWN_CHOICES = {("xlvlm organism pope", "--part")}


def _registry_names(where: tuple[str, str]) -> tuple[str, ...]:
    import importlib

    module, attribute = where
    return tuple(getattr(importlib.import_module(module), attribute))


def _options(what: str) -> dict:
    """(command, option) -> the option's ``what`` ("choices" or "help"), for every option of every
    command of the built parser that has one (sub-command choices left out)."""
    from xlvlm.cli import build_parser
    from xlvlm.cli.config import leaf_parsers

    return {(leaf.prog, action.option_strings[-1]): getattr(action, what)
            for leaf in leaf_parsers(build_parser()) for action in leaf._actions
            if action.option_strings and getattr(action, what) is not None}


def test_each_option_with_choices_offers_a_registrys_names():
    choices = {key: tuple(value) for key, value in _options("choices").items()}
    assert set(choices) == set(REGISTRY_CHOICES) | OWN_CHOICES
    for key, where in REGISTRY_CHOICES.items():
        assert choices[key] == _registry_names(where), key


def test_options_that_take_more_than_names_list_the_registrys_names_in_their_help():
    helps = _options("help")
    for key, where in REGISTRY_HELP.items():
        assert ", ".join(_registry_names(where)) in helps[key], key


def test_the_packages_read_for_choices_import_nothing_heavy_and_keep_their_public_names():
    packages = ("xlvlm.concepts", "xlvlm.steer", "xlvlm.shift", "xlvlm.patching")
    code = (f"import importlib, sys\nmodules = [importlib.import_module(p) for p in {packages!r}]\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or '-')\n"
            "print(all(set(m.__all__) <= set(dir(m)) for m in modules))\n"
            "print(all(getattr(m, name) is not None for m in modules for name in m.__all__))\n"
            "from xlvlm.concepts import SemiNMF, METHODS\nfrom xlvlm.steer import SteeringVector, aggregators\n"
            "print(METHODS['snmf'] is SemiNMF, aggregators.AGGREGATORS['pca'] is aggregators.pca)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["-", "True", "True", "True", "True"]


def test_unknown_choice_is_refused_by_the_parser(capsys):
    from xlvlm.cli import main

    assert main(["steer", "condition", "--method", "svm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'svm'" in err and "lda" in err and len(err.splitlines()) == 1


def test_import_xlvlm_reaches_the_documented_submodules_lazily():
    code = ("import sys, xlvlm; print('torch' in sys.modules)\n"
            "print(xlvlm.steer.registry.__name__, callable(xlvlm.models.families), callable(xlvlm.steer.SteeringVector),\n"
            "      callable(xlvlm.concepts.learn_concepts), callable(xlvlm.data.load_samples), callable(xlvlm.extract))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "xlvlm.steer.registry", "True", "True", "True", "True", "True"]
