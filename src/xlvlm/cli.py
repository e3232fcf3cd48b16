"""The ``xlvlm`` command line. Each command is a thin layer over the Python API.

Bad input exits with status 2 and one line ``xlvlm: error: ...``; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from xlvlm.errors import XlvlmError


def _layers(text: str) -> list:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def _load_config(path: str | None) -> dict:
    """Options from a YAML file (keys as the long flags, with - or _)."""
    if not path:
        return {}
    import yaml

    file = Path(path)
    if not file.is_file():
        raise XlvlmError(f"{file}: config file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise XlvlmError(f"{file}: malformed YAML ({str(exc).splitlines()[0]})")
    if not isinstance(data, dict):
        raise XlvlmError(f"{file}: expected a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> None:
    """Fill options not given on the command line from --config (the command line wins)."""
    config = _load_config(getattr(args, "config", None))
    known = vars(args)
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    for key, value in config.items():
        if key not in known:
            raise XlvlmError(f"{args.config}: unknown option {key!r} for this command")
        if key not in given:
            setattr(args, key, value)


# ---- extract -------------------------------------------------------------------------------------
def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=False, help="samples: a .jsonl file (id, image, prompt[, answer]), "
                        "easyvqa:train|test, coco:KARPATHY.json, vqav2:QUESTIONS.json, or an image folder")
    parser.add_argument("--image-root", help="image folder for coco:/vqav2: data")
    parser.add_argument("--annotations", help="VQAv2 annotations JSON (for vqav2: data)")
    parser.add_argument("--contains", help="keep samples whose reference answer/caption contains this word")
    parser.add_argument("--word-class", help="keep samples whose answer/caption has a word of this class")
    parser.add_argument("--ids", help="keep samples whose id is listed in this file (one per line)")
    parser.add_argument("--limit", type=int, help="keep N random samples (seeded by --seed)")
    parser.add_argument("--seed", type=int, default=0)


def load_data(args) -> list[dict]:
    if not args.data:
        raise XlvlmError("--data is required (a .jsonl file, easyvqa:test, coco:..., vqav2:... or an image folder)")
    from xlvlm.data import load_samples, select_subset

    options = {k: v for k, v in (("image_root", args.image_root), ("annotations", args.annotations)) if v}
    samples = load_samples(args.data, **options)
    return select_subset(samples, contains=args.contains, word_class=args.word_class, ids_file=args.ids,
                         n=args.limit, seed=args.seed)


def cmd_extract(args) -> None:
    import xlvlm

    samples = load_data(args)
    if not args.skip_bad:
        missing = next((s for s in samples if not Path(s["image"]).is_file()), None)
        if missing is not None:  # fail before the (slow) model load
            raise XlvlmError(f"{missing['image']}: image not found (sample {missing['id']!r}); "
                             f"fix the path or pass --skip-bad")
    vlm = xlvlm.load_vlm(args.model, device=args.device, dtype=args.dtype)
    store = xlvlm.extract(vlm, samples, layers=_layers(args.layers), select=args.select, out=args.out,
                          generate=args.generate, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          skip_bad=args.skip_bad, progress=not args.quiet)
    skipped = len(store.manifest.get("skipped", []))
    absent = int((~store.present).sum())
    print(f"wrote {store.path}: {len(store)} samples, layers {', '.join(store.layers)}, selector {store.selector}"
          + (f", {absent} without a match (present: false)" if absent else "")
          + (f", {skipped} skipped (bad images, listed in the manifest)" if skipped else ""))


def cmd_demo(args) -> None:
    from xlvlm.demo import run_demo

    summary = run_demo(args.out, progress=not args.quiet)
    for key, value in summary.items():
        print(f"{key}: {value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlvlm", description="Explain and steer vision-language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("extract", help="record hidden states of chosen tokens into a feature store")
    p.add_argument("--config", help="YAML file with options (command-line flags win)")
    p.add_argument("--model", required=False, help="hub id or local folder")
    add_data_options(p)
    p.add_argument("--layers", default="final", help="comma list: block indices (negatives from the end), "
                   "'final' (final norm output) or module names; default: final")
    p.add_argument("--select", default="last-prompt", help="token selector (see docs/extract.md); default last-prompt")
    p.add_argument("--out", required=False, help="store folder (resumed if it holds a partial store)")
    p.add_argument("--generate", action="store_true", help="record during greedy generation")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, help="float32, float16, bfloat16 or auto (default: float32 on cpu)")
    p.add_argument("--skip-bad", action="store_true", help="skip missing/corrupt images (recorded in the manifest)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract, required=("model", "data", "out"))

    p = sub.add_parser("demo", help="run every workflow end to end on a small model")
    p.add_argument("--out", default="runs/demo", help="run folder (reused by a second run)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        if hasattr(args, "config"):
            _apply_config(parser, args, argv)
        for name in getattr(args, "required", ()):
            if getattr(args, name, None) in (None, ""):
                raise XlvlmError(f"--{name.replace('_', '-')} is required (on the command line or in --config)")
        args.func(args)
    except XlvlmError as exc:
        print(f"xlvlm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xlvlm: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
