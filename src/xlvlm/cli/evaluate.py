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
    options.add_out(p, "also write the result as JSON (as DIR/result.json, `xlvlm report` shows it)")
    p.set_defaults(func=run, required=("predictions",))


def run(args) -> None:
    from xlvlm.evaluation import evaluate_predictions, format_report
    from xlvlm.io import atomic_write_json, stage_result

    result = evaluate_predictions(args.predictions, task=args.task, baseline=args.baseline, source=args.source,
                                  target=args.target, meteor=not args.no_meteor)
    print(format_report(result), end="")
    if args.out:
        atomic_write_json(args.out, stage_result("evaluate", **result))
