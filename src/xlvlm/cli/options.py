"""Option groups shared by several commands, and the helpers that read them.

Each group is defined once here (``--device/--dtype``, the model, the data, ``--allow-partial``,
``--trust-remote-code``, ``--quiet``, ...) and added by the command modules. Nothing here imports
torch or transformers at module level: the parser is built and ``--help`` answered in well
under a second; the helpers that run a command import what they need when called.
"""

from __future__ import annotations

import argparse
import sys

from xlvlm.cli import validate as valid
from xlvlm.concepts.registry import WORD_FILTERS
from xlvlm.errors import XlvlmError

MODEL_HELP = "hub id, local folder, or organism:original|finetuned|hallucinating"
WORDS_HELP = ("ground in these words only: a file with one word per line (or colors, places, sentiments); "
              "default: English words")


class Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of the rest of the CLI (status 2, no usage block)."""

    def error(self, message):
        self.exit(2, f"xlvlm: error: {message} (see `{self.prog} --help`)\n")


# ---- option groups -------------------------------------------------------------------------------
def add_trust_remote_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run code shipped with the model (config auto_map, e.g. Molmo v1): only for models you trust")


def add_model(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    """--model and --trust-remote-code (consent to run the model's own code)."""
    p.add_argument("--model", type=valid.path, help=help)
    add_trust_remote_code(p)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=valid.device, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, help="float32, float16, bfloat16 or auto (default: float32 on cpu)")


def add_generation(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--max-new-tokens", type=valid.positive_int, default=max_new_tokens)
    p.add_argument("--batch-size", type=valid.positive_int, default=8)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=valid.seed, default=0)


def add_words(p: argparse.ArgumentParser) -> None:
    p.add_argument("--words", type=valid.path, help=WORDS_HELP)


def add_word_filter(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--word-filter", default="xlvlm", choices=WORD_FILTERS, help=help)


def add_partial(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="use stores of interrupted extractions (status: partial) with the samples they hold")


def add_out(p: argparse.ArgumentParser, help: str, default=None) -> None:
    p.add_argument("--out", type=valid.path, default=default, help=help)


def add_overwrite(p: argparse.ArgumentParser, help: str = "replace an existing --out (refused without it)") -> None:
    p.add_argument("--overwrite", action="store_true", help=help)


def refuse_existing_out(args, option: str = "--out") -> None:
    """The one output rule, checked before any work starts: an existing --out is refused unless
    --overwrite (:func:`xlvlm.io.refuse_existing_output`)."""
    from xlvlm.io import refuse_existing_output

    refuse_existing_output(getattr(args, option.lstrip("-").replace("-", "_")), overwrite=args.overwrite,
                           option=option)


def add_data(p: argparse.ArgumentParser) -> None:
    """The samples (--data and its reader's options) and the subset of them to keep."""
    p.add_argument("--data", type=valid.path, required=False,
                   help="samples: a .jsonl file (id, image, prompt[, answer]), "
                   "easyvqa:train|test, coco:KARPATHY.json, vqav2:QUESTIONS.json, pope:FILE|FOLDER, "
                   "mmsafety:FOLDER, hf:SOURCE[:split] (a parquet/arrow file or glob, a save_to_disk folder or a "
                   "hub dataset; docs/data.md), or an image folder")
    p.add_argument("--image-root", type=valid.path, help="image folder for coco:/vqav2:/pope: data (and hf: image paths)")
    p.add_argument("--annotations", type=valid.path, help="VQAv2 annotations JSON (for vqav2: data)")
    p.add_argument("--prompt", help="prompt for easyvqa:/coco:/vqav2:/pope:/mmsafety:/folder data (a template with "
                   "{question} for the VQA readers); default: the reader's")
    p.add_argument("--columns", help="hf: data: which column holds each field, e.g. "
                   "image=img,prompt=question,answer=answer,id=question_id,label=answer")
    p.add_argument("--preset", help="hf: data: the columns of a known schema: pope, vqav2 or coco-karpathy "
                   "(lmms-eval's datasets); --columns replaces the entries it names")
    p.add_argument("--streaming", action="store_true", help="hf: data: read it as it goes (datasets' iterable mode: "
                   "no cache copy, memory bounded), for data larger than memory")
    p.add_argument("--answer-type", help="keep samples of these answer types (comma list, e.g. yes/no)")
    p.add_argument("--contains", help="keep samples whose reference answer/caption contains this word")
    p.add_argument("--word-class", type=valid.path, help="keep samples whose answer/caption has a word of this class")
    p.add_argument("--ids", type=valid.path, help="keep samples whose id is listed in this file (one per line)")
    p.add_argument("--limit", type=valid.positive_int, help="keep N random samples (seeded by --seed)")
    add_seed(p)


def choice_list(names) -> str:
    return ", ".join(names)


# ---- helpers that run a command ------------------------------------------------------------------
def command_text(args) -> str:
    """The command that produced a stage's folder: its ``command.txt``, written with the stage's
    other outputs as one unit (the report shows it)."""
    import shlex

    return "xlvlm " + shlex.join(args.argv) + "\n"


def names(text: str) -> list[str]:
    """A comma list (layers, methods) as its items."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def load_data(args) -> list[dict]:
    if not args.data:
        raise XlvlmError("--data is required (a .jsonl file, easyvqa:test, coco:..., vqav2:..., hf:... or an image folder)")
    from xlvlm.data import load_samples, select_subset

    options = {k: v for k, v in (("image_root", args.image_root), ("annotations", args.annotations),
                                  ("prompt", args.prompt), ("columns", args.columns), ("preset", args.preset),
                                  ("streaming", args.streaming)) if v}
    samples = load_samples(args.data, **options)
    return select_subset(samples, contains=args.contains, word_class=args.word_class, ids_file=args.ids,
                         n=args.limit, seed=args.seed, answer_type=args.answer_type)


def load_model(args, device=None):
    """The VLM of --model on --device (or ``device``), --dtype, with --trust-remote-code."""
    from xlvlm.models import load_vlm

    return load_vlm(args.model, device=device or args.device, dtype=args.dtype,
                    trust_remote_code=args.trust_remote_code)


def optional_model(args):
    """The VLM of --model, or None when it is not given (the command then skips what needs it)."""
    return load_model(args) if args.model else None


def open_store(path, args):
    """A feature store for a command: checksums and metadata verified; a partial store only with
    --allow-partial."""
    from xlvlm.features import FeatureStore

    return FeatureStore(path, allow_partial=getattr(args, "allow_partial", False))


def load_words(args):
    """The --words vocabulary (a shipped word class or a file, one word per line), or None."""
    from xlvlm.data.wordlists import load_word_class

    return frozenset(load_word_class(args.words)) if args.words else None


def model_and_words(args):
    """(the VLM of --model or None, the --words vocabulary or None): the words read first (a bad
    file fails before the model loads), then refused when none is a token of the model."""
    words = load_words(args)
    vlm = optional_model(args)
    if vlm is not None:
        from xlvlm.concepts.grounding.text import check_vocabulary

        check_vocabulary(vlm.tokenizer, words, f"--words {args.words}")
    return vlm, words


def warn(message: str) -> None:
    print(f"xlvlm: warning: {message}", file=sys.stderr)
