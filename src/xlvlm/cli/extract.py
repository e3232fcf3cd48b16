"""``xlvlm extract``: hidden states of chosen tokens into a feature store (one process or torchrun)."""

from __future__ import annotations

from xlvlm.cli import options
from xlvlm.cli import validate as valid
from xlvlm.errors import XlvlmError


def register(sub) -> None:
    p = sub.add_parser("extract", help="record hidden states of chosen tokens into a feature store",
                       description="Record hidden states of chosen tokens into a feature store. Rerun the same "
                       "command to resume an interrupted run. Under `torchrun --nproc_per_node N` each process "
                       "extracts a share of the samples and the result is one store (docs/scale.md).")
    options.add_model(p)
    options.add_data(p)
    p.add_argument("--layers", type=valid.names, default="final",
                   help="comma list: block indices (negatives from the end), "
                   "'final' (final norm output) or module names; default: final")
    p.add_argument("--select", default="last-prompt",
                   help="token selector (see docs/extract.md); default last-prompt. token:WORD, class:NAME and "
                        "before:STOP keep the state that produces the word (research convention); "
                        "token-at:, class-at:, before-at: the state at it")
    options.add_out(p, "store folder (resumed if it holds a partial store of the same command)")
    options.add_overwrite(p, "replace the feature store at --out (another command's, or a finished one) instead of "
                          "refusing or reusing it; one process only")
    p.add_argument("--generate", action="store_true", help="record during greedy generation")
    options.add_generation(p, max_new_tokens=20)
    options.add_device(p)
    p.add_argument("--skip-bad", action="store_true", help="skip missing/corrupt images (recorded in the manifest)")
    p.add_argument("--shard-samples", type=valid.positive_int, default=512,
                   help="samples per shard file, rounded up to whole batches: the unit of resuming and of memory "
                   "held while extracting")
    options.add_quiet(p)
    p.set_defaults(func=run, required=("model", "data", "out"))


def run(args) -> None:
    from xlvlm.data import check_images
    from xlvlm.features import extract
    from xlvlm.features.distributed import DistributedContext

    context = DistributedContext.from_env()  # set under torchrun / accelerate launch
    if args.overwrite and context is not None:
        raise XlvlmError("--overwrite is for one process: delete the store, then run under torchrun")
    samples = options.load_data(args)
    if not args.skip_bad:  # a bad image fails here, before the (slow) model load
        check_images(samples)
    if args.shard_samples < args.batch_size:
        # A shard is written after whole batches: it holds at least one, more than was asked.
        options.warn(f"shards hold whole batches: --shard-samples {args.shard_samples} becomes "
                     f"{args.batch_size} (--batch-size)")
    settings = dict(layers=options.names(args.layers), select=args.select, out=args.out, generate=args.generate,
                    max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                    shard_samples=args.shard_samples, skip_bad=args.skip_bad)
    if context is None:
        store = extract(options.load_model(args), samples, progress=not args.quiet, overwrite=args.overwrite,
                        **settings)
    else:
        store = _run_distributed(args, context, samples, settings)
        if context.rank != 0:
            return
    skipped = len(store.manifest.skipped)
    absent = int((~store.present).sum())
    print(f"wrote {store.path}: {len(store)} samples, layers {', '.join(store.layers)}, selector {store.selector}"
          + (f", {absent} without a match (present: false)" if absent else "")
          + (f", {skipped} skipped (bad images, listed in the manifest)" if skipped else ""))


def _run_distributed(args, context, samples, settings):
    """One rank of ``xlvlm extract`` under torchrun: its share of the samples, then the merge."""
    import torch.distributed as dist

    from xlvlm.features.distributed import extract_distributed, init_process_group

    device = context.device(args.device)
    created = init_process_group(context, device)
    try:
        vlm = options.load_model(args, device=device)
        return extract_distributed(vlm, samples, context=context, progress=not args.quiet and context.rank == 0,
                                   **settings)
    finally:
        if created:
            dist.destroy_process_group()
