"""Safe CPU thread settings: the command line applies them before torch loads, Python asks for them."""

import os
import subprocess
import sys

from xlvlm.cli import build_parser

CLEAN = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}


def _python(code: str, **env) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**CLEAN, **env})
    return result.stdout.split()


def test_the_command_sets_a_passive_wait_policy_before_torch_loads():
    code = ("import contextlib, io, os; from xlvlm.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "import torch; from xlvlm.threads import available_cpus\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads() == available_cpus())")
    assert _python(code) == ["PASSIVE", "True"]


def test_the_environment_wins_over_the_defaults():
    code = ("import contextlib, io, os; from xlvlm.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "import torch; print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())")
    assert _python(code, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1") == ["ACTIVE", "1"]


def test_help_says_which_thread_settings_the_command_picks():
    text = " ".join(build_parser().format_help().split())
    assert "OMP_WAIT_POLICY=PASSIVE" in text and "OMP_NUM_THREADS" in text


def test_use_safe_threads_before_torch_and_its_record():
    code = ("import xlvlm; s = xlvlm.use_safe_threads(threads=1); import torch\n"
            "print(s['omp_wait_policy'], s['torch_threads'], torch.get_num_threads())")
    assert _python(code) == ["PASSIVE", "1", "1"]


def test_use_safe_threads_after_torch_warns_how_to_set_the_policy():
    code = ("import warnings, torch, xlvlm\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always'); s = xlvlm.use_safe_threads(threads=1)\n"
            "print(s['omp_wait_policy'], torch.get_num_threads(), 'OMP_WAIT_POLICY=PASSIVE' in str(caught[0].message))")
    assert _python(code) == ["default", "1", "True"]
