"""``xlvlm organism train|finetune|hallucinate|pope``: the model organism (a small LLaVA on easy-VQA)."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid


def register(sub) -> None:
    organism = sub.add_parser("organism", help="train the model organism (a small LLaVA on easy-VQA)").add_subparsers(
        dest="organism_command", metavar="STEP")
    p = organism.add_parser("train", help="train the original organism from scratch")
    options.add_out(p, "output model folder")
    _add_run_options(p, minutes_help="cap the run by the clock (then not deterministic)",
                     reduced_help="a tiny model, a few steps (a smoke test)")
    p.set_defaults(func=run_train, required=("out",))
    for step, purpose, func in (
            ("finetune", "fine-tune an organism so that its captions name colours", run_finetune),
            ("hallucinate", "fine-tune an organism to answer 'yes' about absent objects", run_hallucinate)):
        p = organism.add_parser(step, help=purpose)
        p.add_argument("--original", type=valid.path,
                       help="the original organism's folder (e.g. from xlvlm organism train) or organism:original")
        options.add_out(p, "output model folder")
        _add_run_options(p)
        p.set_defaults(func=func, required=("original", "out"))
    p = organism.add_parser("pope", help="write the POPE-style benchmark on easy-VQA images as JSONL")
    p.add_argument("--part", default="test", choices=["train", "test"], help="easy-VQA images to ask about")
    p.add_argument("--images", type=valid.positive_int, default=None, help="use N images (drawn with --seed); default all")
    options.add_seed(p)
    options.add_out(p, "output .jsonl (read it with --data pope:FILE)")
    options.add_overwrite(p)
    p.set_defaults(func=run_pope, required=("out",))
    p = organism.add_parser("steer-hallucination", help="compare no steering, mean-diff, gated mean-diff, P2S and "
                                                        "L2S on the hallucinating organism's benchmark")
    p.add_argument("--train-images", type=valid.positive_int, default=300,
                   help="easy-VQA training images whose questions every method learns from")
    p.add_argument("--test-images", type=valid.positive_int, default=None,
                   help="held-out test images to score on (drawn with --seed); default all 1,000")
    p.add_argument("--side-questions", type=valid.positive_int, default=300,
                   help="shape/colour test questions for the side effects")
    p.add_argument("--steer-layer", type=int, default=3, help="the decoder layer steered")
    p.add_argument("--context-layer", type=int, default=0,
                   help="the layer whose last prompt state L2S and the condition read")
    p.add_argument("--epochs", type=valid.positive_int, default=100, help="L2S training epochs")
    options.add_seed(p)
    options.add_out(p, "output folder (result.json, hallucination_steering.png); each method's scores are kept in "
                   "OUT.partial as they finish, and a rerun of the same command resumes from them")
    options.add_overwrite(p)
    options.add_quiet(p)
    p.set_defaults(func=run_steer_hallucination, required=("out",))
    _register_calibrated_l2s(organism)


def _register_calibrated_l2s(organism) -> None:
    p = organism.add_parser("calibrate-l2s", help="L2S of the hallucinating organism with alpha chosen by calibration, "
                                                  "for each way of making its training vectors")
    p.add_argument("--train-images", type=valid.positive_int, default=240,
                   help="easy-VQA training images whose questions make the vectors")
    p.add_argument("--calibration-images", type=valid.positive_int, default=40,
                   help="other training images whose questions choose alpha")
    p.add_argument("--test-images", type=valid.positive_int, default=None,
                   help="held-out test images to score on (drawn with --seed); default all 1,000")
    p.add_argument("--side-questions", type=valid.positive_int, default=200,
                   help="shape/colour questions for the side effects (of training images when calibrating)")
    p.add_argument("--epochs", type=valid.positive_int, default=100, help="L2S training epochs")
    options.add_seed(p)
    options.add_out(p, "output folder (result.json, calibrated_l2s.png)")
    options.add_quiet(p)
    p.set_defaults(func=run_calibrated_l2s, required=("out",))


def _add_run_options(p, minutes_help=None, reduced_help=None) -> None:
    options.add_seed(p)
    p.add_argument("--minutes", type=valid.positive_float, default=None, help=minutes_help)
    p.add_argument("--reduced", action="store_true", help=reduced_help)
    options.add_quiet(p)
    options.add_overwrite(p, "replace an existing model folder --out (refused without it)")


def run_train(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.apps.organism.train import train_organism

    summary = train_organism(args.out, seed=args.seed, minutes=args.minutes, reduced=args.reduced,
                             progress=not args.quiet)
    print(f"wrote {args.out}: {summary.get('parameters', '?')} parameters in {summary.get('seconds', 0):.0f} s")


def run_finetune(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.apps.organism.finetune import finetune_organism

    summary = finetune_organism(args.original, args.out, seed=args.seed, minutes=args.minutes, reduced=args.reduced,
                                progress=not args.quiet)
    print(f"wrote {args.out}: fine-tuned in {summary.get('seconds', 0):.0f} s ({summary.get('change', '')})")


def run_hallucinate(args) -> None:
    options.refuse_existing_out(args)
    from xlvlm.apps.organism.hallucinate import hallucinate_organism

    summary = hallucinate_organism(args.original, args.out, seed=args.seed, minutes=args.minutes,
                                   reduced=args.reduced, progress=not args.quiet)
    print(f"wrote {args.out}: fine-tuned in {summary.get('seconds', 0):.0f} s ({summary.get('change', '')})")


def run_pope(args) -> None:
    from pathlib import Path

    from xlvlm.apps.organism.pope import write_pope_jsonl
    from xlvlm.errors import XlvlmError
    from xlvlm.io import refuse_existing_output

    if Path(args.out).is_dir():
        raise XlvlmError(f"--out {args.out}: a folder; name the .jsonl file to write")
    refuse_existing_output(args.out, overwrite=args.overwrite)
    samples = write_pope_jsonl(args.out, part=args.part, seed=args.seed, images=args.images)
    print(f"wrote {args.out}: {len(samples)} POPE questions on easy-VQA {args.part} images "
          f"(random, popular, adversarial; half yes)")


def run_calibrated_l2s(args) -> None:
    from xlvlm.apps.organism.calibrated_l2s import CalibratedL2SSettings, calibrated_l2s, table_lines, write_result

    settings = CalibratedL2SSettings(train_images=args.train_images, calibration_images=args.calibration_images,
                                     test_images=args.test_images, side_questions=args.side_questions,
                                     epochs=args.epochs, seed=args.seed)
    result = calibrated_l2s(settings, progress=not args.quiet)
    path = write_result(result, args.out, command=options.command_text(args))
    print("\n".join(table_lines(result)))
    print(f"wrote {path}")


def run_steer_hallucination(args) -> None:
    import shlex
    import shutil
    import sys
    from pathlib import Path

    from xlvlm.apps.organism.hallucination_steering import (ComparisonSettings, compare_steering, table_lines,
                                                            write_comparison)
    from xlvlm.errors import XlvlmError
    from xlvlm.io import refuse_existing_output

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise XlvlmError(f"--out {args.out}: exists and is not a folder; name a folder for result.json and its plot")
    refuse_existing_output(args.out, overwrite=args.overwrite)
    settings = ComparisonSettings(train_images=args.train_images, test_images=args.test_images,
                                  side_questions=args.side_questions, steer_layer=args.steer_layer,
                                  context_layer=args.context_layer, epochs=args.epochs, seed=args.seed)
    # Each method's scores are kept in OUT.partial as they finish: a rerun after a kill resumes there.
    parts = Path(f"{args.out}.partial")
    result = compare_steering(settings, progress=not args.quiet, checkpoints=parts)
    path = write_comparison(result, args.out, command="xlvlm " + shlex.join(sys.argv[1:]))
    shutil.rmtree(parts, ignore_errors=True)
    print("\n".join(table_lines(result)))
    print(f"wrote {path}")
