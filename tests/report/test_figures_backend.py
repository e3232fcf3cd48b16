"""Figures must not touch pyplot: a notebook's backend and its open figures stay as they were."""

import subprocess
import sys


def test_figures_leave_the_pyplot_backend_and_open_figures_alone(tmp_path):
    code = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
mine = plt.figure()
from xlvlm.figures import bar_chart
from xlvlm.steer.run import write_sweep
from pathlib import Path
bar_chart({{"a": [1, 2]}}, {str(tmp_path / "bars.png")!r}, ["p", "q"], "y", "t")
row = dict(method="mean-diff", layer="1", alpha=1.0, success=0.5, side_unchanged=0.9, side_accuracy_change=0.0,
           accuracy=0.8, per_type={{}})
write_sweep([row], Path({str(tmp_path)!r}), "yes", "no")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [mine.number], plt.get_fignums()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
