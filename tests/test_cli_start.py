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


def test_choices_are_the_registries_names():
    from xlvlm import choices
    from xlvlm.concepts import METHODS as concept_methods
    from xlvlm.shift.analysis import AGGREGATES, ASSIGNMENTS
    from xlvlm.steer import METHODS as steer_methods

    assert tuple(concept_methods) == choices.CONCEPT_METHODS
    assert steer_methods == choices.STEER_METHODS
    assert (AGGREGATES, ASSIGNMENTS) == (choices.SHIFT_AGGREGATES, choices.SHIFT_ASSIGNMENTS)
    from xlvlm.concepts.solvers.simple import ACTIVATIONS
    from xlvlm.concepts.grounding.text import WORD_FILTERS
    from xlvlm.shift.analysis import MAS_RANKINGS
    from xlvlm.steer.apply import POSITION_RULES
    from xlvlm.steer.operators import OPERATORS

    assert (ACTIVATIONS, WORD_FILTERS, MAS_RANKINGS) == (choices.SIMPLE_ACTIVATIONS, choices.WORD_FILTERS,
                                                         choices.SHIFT_MAS_RANKINGS)
    assert (tuple(OPERATORS), POSITION_RULES) == (choices.OPERATORS, choices.POSITION_RULES)


def test_unknown_choice_is_refused_by_the_parser(capsys):
    from xlvlm.cli import main

    assert main(["steer", "condition", "--method", "svm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'svm'" in err and "lda" in err and len(err.splitlines()) == 1


def test_import_xlvlm_reaches_the_documented_submodules_lazily():
    code = ("import sys, xlvlm; print('torch' in sys.modules)\n"
            "print(xlvlm.choices.__name__, callable(xlvlm.models.families), callable(xlvlm.steer.SteeringVector),\n"
            "      callable(xlvlm.concepts.learn_concepts), callable(xlvlm.data.load_samples), callable(xlvlm.extract))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "xlvlm.choices", "True", "True", "True", "True", "True"]
