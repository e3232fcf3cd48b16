"""``xlvlm patch``: activation patching and causal tracing (where the model reads the answer)."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.patching.registry import METHODS, METRICS


def register(sub) -> None:
    p = sub.add_parser("patch", help="activation patching / causal tracing: which layers and positions carry the answer")
    options.add_model(p)
    options.add_device(p)
    p.add_argument("--clean", type=valid.path, help="clean samples (a .jsonl of id, image, prompt, answer, or any "
                   "--data source of xlvlm extract)")
    p.add_argument("--corrupted", type=valid.path, help="corrupted samples, paired with the clean ones by id (their "
                   "templated prompts must align); without it: causal tracing (noise on the image tokens' embeddings)")
    p.add_argument("--answers", help="the metric's answers A,B for every pair (default: the samples' answers, clean first)")
    p.add_argument("--metric", default="logit-diff", choices=METRICS,
                   help="logit(A) - logit(B) at the first answer token, or the probability of A there")
    p.add_argument("--method", default="exact", choices=tuple(METHODS),
                   help="exact: one patched run per cell; attribution: first-order estimate from one backward pass")
    p.add_argument("--layers", default=None, help="sites: block indices, final, embed, attn:I, mlp:I, resid, attn, "
                   "mlp or module names (default: embed and every block's output)")
    p.add_argument("--positions", default="groups", help="groups (image, question, template, last), tokens, grid "
                   "or grid:K (image cells of K x K tokens)")
    p.add_argument("--noise", type=valid.positive_float, default=3.0,
                   help="causal tracing: noise scale, in standard deviations of the image tokens' embeddings")
    p.add_argument("--batch-size", type=valid.positive_int, default=8, help="pairs prepared together, rows per pass")
    options.add_seed(p)
    options.add_quiet(p)
    options.add_out(p, "output folder (result.json, patching.safetensors, figures)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run, required=("model", "clean", "out"))


def run(args) -> None:
    from xlvlm.data import load_samples
    from xlvlm.io import refuse_existing_output
    from xlvlm.patching import make_pairs
    from xlvlm.patching.outputs import write_patching

    refuse_existing_output(args.out, overwrite=args.overwrite)
    answers = options.names(args.answers) if args.answers else None
    pairs = make_pairs(load_samples(args.clean), load_samples(args.corrupted) if args.corrupted else None, answers)
    vlm = options.load_model(args)
    result = METHODS[args.method](vlm, pairs, layers=args.layers, positions=args.positions, metric=args.metric,
                        batch_size=args.batch_size, noise=args.noise, seed=args.seed, progress=not args.quiet)
    path = write_patching(result, args.out, command=options.command_text(args), model=str(args.model))
    mean = result.mean_recovery()
    if mean is not None and result.positions == "groups":
        best = {label: result.sites[int(mean[:, c].nan_to_num(-1e9).argmax())]
                for c, label in enumerate(result.pairs[0].labels)}
        print(f"{len(result.pairs)} pair(s); where each group recovers most: "
              + ", ".join(f"{k} at {v}" for k, v in best.items()))
    print(f"wrote {path}")
