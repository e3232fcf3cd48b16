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


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_heartbeat_speaks_only_when_work_runs_long(capsys, monkeypatch):
    from xlvlm.progress import Heartbeat

    monkeypatch.setenv("XLVLM_PROGRESS", "0")  # as in a log: no bar
    clock = _Clock()
    beat = Heartbeat("generate", total=400, unit="samples", every=30, clock=clock)
    for done, now in [(64, 10), (128, 20), (192, 31), (256, 45), (320, 62)]:
        clock.now = now
        beat.update(done)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["xlvlm: generate: 192/400 samples after 31 s (about 34 s to go)",
                     "xlvlm: generate: 320/400 samples after 62 s (about 16 s to go)"]
    quick = Heartbeat("generate", total=400, unit="samples", every=30, clock=_Clock())
    quick.update(400)  # all done within the interval: quiet
    monkeypatch.setenv("XLVLM_PROGRESS", "1")  # a bar is drawn instead
    shown = Heartbeat("generate", total=400, unit="samples", every=30, clock=clock)
    clock.now = 1000
    shown.update(100)
    assert capsys.readouterr().err == ""


def test_long_generation_reports_progress_without_a_terminal(vlm_of, samples, capsys, monkeypatch):
    import xlvlm.progress

    class Eager(xlvlm.progress.Heartbeat):  # every batch counts as long work
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "every": 0.0})

    monkeypatch.setenv("XLVLM_PROGRESS", "0")
    monkeypatch.setattr(xlvlm.progress, "Heartbeat", Eager)
    vlm = vlm_of("llava")
    capsys.readouterr()  # building the tiny model writes its own bars
    vlm.predict(samples[:4], max_new_tokens=1, batch_size=2, progress=True, desc="generate pope")
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" after ")[0] for line in lines] == ["xlvlm: generate pope: 2/4 samples",
                                                            "xlvlm: generate pope: 4/4 samples"]
    vlm.predict(samples[:4], max_new_tokens=1, batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


def test_every_bar_goes_through_xlvlm_progress():
    """A tqdm bar made directly redraws itself into logs; ``xlvlm.progress.bar`` is quiet there."""
    from pathlib import Path

    import xlvlm

    package = Path(xlvlm.__file__).parent
    direct = [str(path.relative_to(package)) for path in package.rglob("*.py")
              if path.name != "progress.py" and "tqdm" in path.read_text(encoding="utf-8")]
    assert direct == [], f"use xlvlm.progress.bar instead of tqdm in: {direct}"
