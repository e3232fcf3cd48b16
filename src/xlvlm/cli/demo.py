"""``xlvlm demo``: every workflow end to end on the model organism."""

from __future__ import annotations

from xlvlm.cli import options


def register(sub) -> None:
    p = sub.add_parser("demo", help="run every workflow end to end on a small model")
    options.add_out(p, "run folder (reused by a second run)", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a reduced run (fewer samples, one layer)")
    options.add_quiet(p)
    options.add_overwrite(p, "delete an earlier demo run at --out and start afresh (without it: its finished "
                          "stages are reused)")
    p.set_defaults(func=run)


def run(args) -> None:
    from xlvlm.apps.demo import run_demo

    for key, value in run_demo(args.out, quick=args.quick, progress=not args.quiet, overwrite=args.overwrite).items():
        print(f"{key}: {value}")
