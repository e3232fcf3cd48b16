"""``xlvlm evaluate``: score predictions (VQA accuracy, a targeted steering report, captions)."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.evaluation import TASKS  # the registry; the package imports neither torch nor transformers


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score predictions: VQA accuracy, targeted steering report, captions, "
                       "POPE, refusal rate")
    p.add_argument("--predictions", type=valid.path, help="predictions .jsonl (from steer apply)")
    p.add_argument("--task", default="vqa", choices=tuple(TASKS))
    p.add_argument("--baseline", type=valid.path, help="unsteered predictions on the same samples (for side effects)")
    p.add_argument("--source", help="answer or answer type steered away from (targeted report)")
    p.add_argument("--target", help="answer steered towards (targeted report)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    options.add_out(p, "also write the result as JSON: a FILE.json, or a folder DIR (written as DIR/result.json, "
                       "which `xlvlm report` shows)")
    options.add_overwrite(p)
    p.set_defaults(func=run, required=("predictions",))


def result_path(out: str):
    """Where ``--out`` writes: the file itself when it ends in .json, else OUT/result.json (a
    folder, made if missing). A one-line XlvlmError when that cannot be (OUT a file not .json)."""
    from pathlib import Path

    from xlvlm.errors import XlvlmError
    from xlvlm.io import RESULT_FILE

    path = Path(out)
    if path.suffix.lower() == ".json" and not path.is_dir():
        return path
    if path.exists() and not path.is_dir():
        raise XlvlmError(f"--out {out}: an existing file that is not .json; name a FILE.json or a folder for "
                         f"result.json")
    return path / RESULT_FILE


def run(args) -> None:
    from xlvlm.evaluation import evaluate_predictions, format_report
    from xlvlm.io import atomic_write_json, refuse_existing_output, stage_result

    out = result_path(args.out) if args.out else None
    if out is not None:
        refuse_existing_output(out, overwrite=args.overwrite)
    result = evaluate_predictions(args.predictions, task=args.task, baseline=args.baseline, source=args.source,
                                  target=args.target, meteor=not args.no_meteor)
    print(format_report(result), end="")
    if out is not None:
        atomic_write_json(out, stage_result("evaluate", **result))
        print(f"wrote {out}")
