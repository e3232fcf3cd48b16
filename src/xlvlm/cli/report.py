"""``xlvlm report``: one self-contained HTML page from the stages a run folder holds."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="build RUN_DIR/report.html from the stages a run folder holds")
    p.add_argument("run_dir", help="run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a RUN_DIR/report.html that xlvlm did not build (a report it built is always rebuilt)")
    p.set_defaults(func=run)


def run(args) -> None:
    from xlvlm.report import build_report

    print(f"wrote {build_report(args.run_dir, overwrite=args.overwrite)}")
