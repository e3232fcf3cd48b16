"""bench/concepts.py keeps its rows and notes inside its own RESULTS.md section."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "concepts.py"


@pytest.fixture()
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_concepts", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "RESULTS.md")
    return module


def test_creates_file_then_appends_inside_own_section(bench):
    bench.append_row("| r1 |", "n1")
    bench.RESULTS.write_text(bench.RESULTS.read_text() + "\n## extract\n\n| other |\n")
    bench.append_row("| r2 |", "n2")
    lines = bench.RESULTS.read_text().splitlines()
    assert lines.index("| r1 |") + 1 == lines.index("| r2 |")
    assert lines.index("- n1") + 1 == lines.index("- n2") < lines.index("## extract")
    assert lines[-1] == "| other |" and lines.count("## concepts") == 1


def test_appends_to_a_file_written_by_others(bench):
    bench.RESULTS.write_text("# Benchmark results\n\n## steer\n\ntext\n")
    bench.append_row("| r1 |", "n1")
    text = bench.RESULTS.read_text()
    assert text.startswith("# Benchmark results\n\n## steer\n\ntext\n\n## concepts")
    assert text.endswith("| r1 |\n\n- n1\n")


def test_time_to_reach_interpolates():
    spec = importlib.util.spec_from_file_location("bench_concepts", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trace = [{"seconds": 10.0, "error": 0.5}, {"seconds": 20.0, "error": 0.1}]
    assert module.time_to_reach(trace, 0.3) == pytest.approx(15.0)
    assert module.time_to_reach(trace, 0.6) == 10.0
    assert module.time_to_reach(trace, 0.05) is None
