"""Long work reports itself in a way a log can hold: labelled bars only on a terminal, one line
per stage, and short reprs."""

import subprocess
import sys

import torch

BARS = ("from xlvlm.progress import announce, bar\n"
        "announce('stage one')\n"
        "for _ in bar(range(3), desc='outer'):\n"
        "    for _ in bar(range(3), desc='inner', leave=False): pass\n")


def _stderr(env_extra: dict) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "XLVLM_PROGRESS"}
    return subprocess.run([sys.executable, "-c", BARS], capture_output=True, text=True, check=True,
                          env={**env, **env_extra}).stderr


def test_bars_stay_out_of_a_log_but_stages_are_announced():
    err = _stderr({})  # stderr is a pipe, not a terminal
    assert err == "xlvlm: stage one\n"  # no carriage returns, no cursor-up (ESC[A) lines


def test_bars_can_be_forced_and_carry_their_label():
    err = _stderr({"XLVLM_PROGRESS": "1"})
    assert "outer" in err and "inner" in err


def test_a_condition_repr_is_one_short_line():
    from xlvlm.steer import Condition

    text = repr(Condition("3", torch.ones(128) / 128 ** 0.5, 0.25))
    assert "\n" not in text and len(text) < 120 and "0.25" in text and "128" in text
