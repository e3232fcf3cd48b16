"""The timings the docs cite, from one recorded run: each command a page gives, run as the page
writes it, in a fresh process, from an empty folder.

    python bench/doc_timings.py [--only demo,quickstart,...] [--write]

Jobs (the page that cites each in brackets):
  demo                 ``xlvlm demo`` (README, quickstart)
  quickstart           the 14 commands of docs/quickstart.md's session, each a fresh process (quickstart)
  pope                 docs/hallucination.md's POPE block with ``images=None``: 4,000 questions (hallucination)
  vqa                  ``measure_vqa`` of the original organism on every easy-VQA test question (organism)
  steer-hallucination  ``xlvlm organism steer-hallucination`` with its defaults (hallucination)
  calibrate-l2s        the ``xlvlm organism calibrate-l2s`` command of docs/hallucination.md (hallucination)

Each runs under ``/usr/bin/time`` (wall, user + system CPU, peak resident memory of the largest
process) in the environment a reader has: OMP_WAIT_POLICY and OMP_NUM_THREADS unset, so the
command line picks its own thread settings and Python blocks get what they ask for. The load
average before and after each job says what else the cores ran. ``--write`` replaces the table
under "## Timings the docs cite" in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
BIN = Path(sys.executable).parent


def _page_block(page: str, language: str, contains: str) -> str:
    blocks = re.findall(rf"^```{language}\n(.*?)^```", (ROOT / page).read_text(), flags=re.S | re.M)
    return next(block for block in blocks if contains in block)


def _quickstart() -> list[str]:
    session = _page_block("docs/quickstart.md", "bash", "xlvlm extract")
    return ["bash", "-e", "-c", session]


def _pope() -> list[str]:
    block = _page_block("docs/hallucination.md", "python", "pope_benchmark")
    assert "images=20" in block, "the POPE block of docs/hallucination.md changed: update bench/doc_timings.py"
    return [sys.executable, "-c", block.replace("images=20", "images=None")]


VQA = ("import xlvlm\nxlvlm.use_safe_threads()\nfrom xlvlm import organism\n"
       "from xlvlm.apps.organism.evaluate import measure_vqa\nprint(measure_vqa(organism.load('original')))")

# name -> (what, by which page, the command)
JOBS = {
    "demo": ("the demo from an empty folder", "README, quickstart", lambda: ["xlvlm", "demo", "--out", "demo"]),
    "quickstart": ("the quickstart's 14 commands, each a fresh process", "quickstart", _quickstart),
    "pope": ("POPE predictions of the hallucinating organism, 4,000 questions", "hallucination", _pope),
    "vqa": ("VQA accuracy of the original organism, every easy-VQA test question", "organism",
            lambda: [sys.executable, "-c", VQA]),
    "steer-hallucination": ("hallucination steering, defaults (1,000 test images)", "hallucination",
                            lambda: ["xlvlm", "organism", "steer-hallucination", "--out", "steer-hallucination"]),
    "calibrate-l2s": ("calibrated L2S, three contrasts", "hallucination",
                      lambda: ["xlvlm", "organism", "calibrate-l2s", "--train-images", "160", "--calibration-images",
                               "40", "--test-images", "300", "--out", "calibrated-l2s"]),
}


def run_job(name: str, folder: Path) -> dict:
    """Run one job in ``folder``; its wall, CPU and peak memory, and the load around it."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XLVLM_PROGRESS")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1")
    stats = folder / f"{name}.time"
    load_before = os.getloadavg()[0]
    print(f"doc_timings: {name} ...", file=sys.stderr, flush=True)
    with open(folder / f"{name}.log", "w") as log:
        done = subprocess.run(["/usr/bin/time", "-o", str(stats), "-f", "%e %U %S %M", *JOBS[name][2]()],
                              cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"doc_timings: {name} failed (exit {done.returncode}):\n" + (folder / f"{name}.log").read_text()[-3000:])
    wall, user, system, peak_kb = stats.read_text().split()[-4:]
    return {"wall": float(wall), "user": float(user), "system": float(system), "peak_gb": int(peak_kb) / 1024 ** 2,
            "load": (load_before, os.getloadavg()[0])}


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def table(results: dict) -> list[str]:
    sys.path.insert(0, str(HERE))
    from common import cpu_name

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [f"One run of `python bench/doc_timings.py` ({date.today().isoformat()}, git {git}; {cpu_name()}, "
             f"{os.cpu_count()} CPUs, no GPU; torch's threads and wait policy as a reader gets them: the command "
             "line sets OMP_WAIT_POLICY=PASSIVE and one thread per CPU itself, the Python blocks call "
             "`xlvlm.use_safe_threads()`; jobs one after another, nothing of ours beside them):", "",
             "| job | what (cited by) | wall | CPU (user + system) | peak memory | load average (1 min) before, after: our "
             "own jobs included |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        what, page = JOBS[name][:2]
        lines.append(f"| {name} | {what} ({page}) | {_minutes(r['wall'])} | {r['user'] + r['system']:.0f} s | "
                     f"{r['peak_gb']:.2f} GB | {r['load'][0]:.1f}, {r['load'][1]:.1f} |")
    return lines


def write(lines: list[str]) -> None:
    """Replace the run under "## Timings the docs cite" (up to the next heading) by ``lines``."""
    text = RESULTS.read_text()
    heading = "## Timings the docs cite"
    start = text.index(heading)
    end = text.index("\n## ", start + len(heading))
    intro = ("Every wall-clock or CPU time that README.md and docs/*.md give for a whole command comes from "
             "the run below; the pages link here instead of restating other numbers. Rerun it after a change "
             "that moves them (`--only JOB` reruns one job; the table then says so by its date and git).")
    RESULTS.write_text(text[:start] + f"{heading}\n\n{intro}\n\n" + "\n".join(lines) + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(JOBS), help=f"comma-separated jobs among {', '.join(JOBS)}")
    parser.add_argument("--keep", metavar="DIR", help="run the jobs in DIR/JOB and keep what they write (DIR/JOB must not exist)")
    parser.add_argument("--write", action="store_true", help="replace the table in bench/RESULTS.md")
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)}; choose among {', '.join(JOBS)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="doc-timings-") as tmp:
        root = Path(args.keep or tmp)
        for name in names:
            folder = root / name
            folder.mkdir(parents=True)  # an existing folder would not be "from an empty folder"
            results[name] = run_job(name, folder)
            print(table({name: results[name]})[-1], flush=True)
    lines = table(results)
    print("\n".join(lines))
    if args.write:
        write(lines)


if __name__ == "__main__":
    main()
