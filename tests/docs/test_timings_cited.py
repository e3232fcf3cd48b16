"""Every whole-command timing the pages give ("2 min 12 s wall", "172 s of CPU time") comes from
the one recorded run of bench/doc_timings.py in bench/RESULTS.md (or from the training records
next to it) and the page links there: numbers from different runs on differently loaded cores
contradicted each other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")
TIMING = re.compile(r"(\d+ min \d+ s|\d+(?:\.\d+)? s) (?:wall|of CPU|CPU)\b")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _recorded() -> tuple[str, str]:
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    return _section(results, "## Timings the docs cite"), _section(results, "## Training times of the shipped organism")


def test_the_docs_timings_come_from_one_recorded_run():
    run, training = _recorded()
    assert run.count("One run of `python bench/doc_timings.py`") == 1, "one run, not several that disagree"
    jobs = [line.split("|")[1].strip() for line in run.splitlines() if line.startswith("| ") and "---" not in line]
    assert jobs[0] == "job" and len(jobs[1:]) == len(set(jobs[1:])) >= 5, jobs
    cited = []
    for page in PAGES:
        for paragraph in re.split(r"\n\s*\n", (ROOT / page).read_text(encoding="utf-8")):
            flat = " ".join(paragraph.split())
            for number in TIMING.findall(flat):
                cited.append((page, number))
                assert "bench/RESULTS.md" in flat, f"{page}: {number!r} is given without a link to bench/RESULTS.md"
                assert number in run or number in training, f"{page}: {number!r} is not in the recorded run"
    assert len(cited) >= 8, cited  # the demo, the quickstart, hallucination steering, training...
