"""A hallucination-steering comparison killed (SIGKILL) after some methods keeps their scores and
the learnt methods, and a rerun resumes from them instead of starting over."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from xlvlm.apps.organism import hallucination_steering as hs

from tests.organism.test_pope import CONFUSED

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = dict(train_images=4, test_images=2, side_questions=4, epochs=2, batch_size=32)

KILLED_AFTER_MEAN_DIFF = """
import os, signal, sys
from xlvlm.apps.organism import hallucination_steering as hs
from tests.organism.test_pope import CONFUSED

keep = hs.Checkpoints.keep_scores
def keep_then_die(self, method, scores):
    keep(self, method, scores)
    if method == "mean-diff":
        os.kill(os.getpid(), signal.SIGKILL)
hs.Checkpoints.keep_scores = keep_then_die
hs.compare_steering(hs.ComparisonSettings(**{settings!r}), confused=CONFUSED, checkpoints=sys.argv[1])
"""


def test_a_killed_comparison_resumes_from_the_methods_it_finished(tmp_path):
    parts = tmp_path / "out.partial"
    code = KILLED_AFTER_MEAN_DIFF.format(settings=SETTINGS)
    killed = subprocess.run([sys.executable, "-c", code, str(parts)], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    kept = sorted(p.name for p in parts.iterdir())
    assert {"scores-none.json", "scores-mean-diff.json", "l2s.safetensors"} <= set(kept), kept
    assert "scores-L2S.json" not in kept
    before = {name: (parts / name).stat().st_mtime_ns for name in kept}

    scored = []
    original = hs._score_method

    def recording(runs, method, *args):
        scored.append(method)
        return original(runs, method, *args)

    hs._score_method = recording
    try:
        result = hs.compare_steering(hs.ComparisonSettings(**SETTINGS), confused=CONFUSED, checkpoints=parts)
    finally:
        hs._score_method = original
    assert scored == ["mean-diff + condition", "P2S (oracle)", "L2S"]  # none and mean-diff were kept
    assert {name: (parts / name).stat().st_mtime_ns for name in kept} == before  # reused, not rewritten
    assert {r["method"] for r in result["rows"]} == set(hs.METHODS)
