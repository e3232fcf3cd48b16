"""``xlvlm organism train|finetune``: the model organism (a small LLaVA on easy-VQA)."""

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
    p = organism.add_parser("finetune", help="fine-tune an organism so that its captions name colours")
    p.add_argument("--original", type=valid.path,
                   help="the original organism's folder (e.g. from xlvlm organism train)")
    options.add_out(p, "output model folder")
    _add_run_options(p)
    p.set_defaults(func=run_finetune, required=("original", "out"))


def _add_run_options(p, minutes_help=None, reduced_help=None) -> None:
    options.add_seed(p)
    p.add_argument("--minutes", type=valid.positive_float, default=None, help=minutes_help)
    p.add_argument("--reduced", action="store_true", help=reduced_help)
    options.add_quiet(p)


def run_train(args) -> None:
    from xlvlm.organism.train import train_organism

    summary = train_organism(args.out, seed=args.seed, minutes=args.minutes, reduced=args.reduced,
                             progress=not args.quiet)
    print(f"wrote {args.out}: {summary.get('parameters', '?')} parameters in {summary.get('seconds', 0):.0f} s")


def run_finetune(args) -> None:
    from xlvlm.organism.finetune import finetune_organism

    summary = finetune_organism(args.original, args.out, seed=args.seed, minutes=args.minutes, reduced=args.reduced,
                                progress=not args.quiet)
    print(f"wrote {args.out}: fine-tuned in {summary.get('seconds', 0):.0f} s ({summary.get('change', '')})")
