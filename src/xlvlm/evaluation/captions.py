"""Caption metrics (CIDEr-D, BLEU-4, ROUGE-L, METEOR) and class-word frequencies.

The scores are pycocoevalcap's, computed the way the COCO caption evaluation does:

1. Predictions and reference ``captions`` are tokenised with the Stanford PTB tokenizer that
   pycocoevalcap ships (Java; lower-cased, one caption per line), and the punctuation tokens
   ``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;`` are dropped.
2. ``BLEU-4``: corpus BLEU with 1- to 4-grams, clipped counts, the brevity penalty against
   the closest reference length (``Bleu(4)``, option ``closest``).
   ``CIDEr-D``: mean over images of the TF-IDF-weighted cosine of 1- to 4-grams between the
   prediction and each reference, with clipped counts and a Gaussian length penalty
   (sigma 6), times 10 (``Cider``); the IDF comes from the references of the evaluated set
   itself, so it needs several images with different references to mean anything.
   ``ROUGE-L``: F-measure (beta 1.2) of the longest common subsequence, best reference.
   ``METEOR``: METEOR 1.5 (English, normalised), unigram matching with stems, synonyms and
   paraphrases; a Java process started per evaluation (about 10 s to load).
   All are fractions (CIDEr-D can exceed 1), averaged over the images.

Without Java, tokenisation falls back to a Python approximation (lower-case, split off
punctuation, drop it) and METEOR is skipped; the result's ``notes`` say so.

Class-word frequency (:func:`class_word_frequency`) counts whole words of a word class
(``colors``, ``places``, ``sentiments`` or a file) in lower-cased text: ``share`` is the
fraction of texts with at least one class word, ``per_text`` the mean number of class words
per text, ``counts`` how often each word occurs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from xlvlm.data.subsets import words_of
from xlvlm.data.wordlists import load_word_class
from xlvlm.errors import XlvlmError
from xlvlm.evaluation.predictions import as_predictions

DEFAULT_WORD_CLASSES = ("colors", "places", "sentiments")
PTB_PUNCTUATION = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"})
_PUNCT_SPLIT = re.compile(r"\w+(?:'\w+)?|[^\w\s]+")


def _pycocoevalcap_dir() -> Path:
    try:
        import pycocoevalcap.tokenizer.ptbtokenizer as ptb
    except ImportError:
        raise XlvlmError("caption metrics need pycocoevalcap; run: pip install 'xlvlm[metrics]' (or pip install pycocoevalcap)")
    return Path(ptb.__file__).resolve().parent.parent


def java_available() -> bool:
    return shutil.which("java") is not None


def ptb_tokenize(texts: list[str]) -> list[str]:
    """Tokenise with pycocoevalcap's Stanford PTB tokenizer (needs Java), punctuation dropped."""
    if not texts:
        return []
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    lines = "".join(" ".join(str(t).split()) + "\n" for t in texts)
    command = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", "-encoding", "utf-8"]
    try:
        done = subprocess.run(command, input=lines.encode("utf-8"), capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise XlvlmError(f"PTB tokenizer ({jar}) failed to run ({exc}); check Java 8+ is installed")
    out = done.stdout.decode("utf-8").split("\n")
    if done.returncode != 0 or len(out) != len(texts) + 1:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise XlvlmError(f"PTB tokenizer ({jar}) failed: {reason[0]}; reinstall pycocoevalcap or check Java")
    return [" ".join(w for w in line.split() if w not in PTB_PUNCTUATION) for line in out[: len(texts)]]


def simple_tokenize(texts: list[str]) -> list[str]:
    """The Python stand-in for the PTB tokenizer: lower-case, split off punctuation, drop it."""
    return [" ".join(w for w in _PUNCT_SPLIT.findall(str(t).lower()) if re.search(r"\w", w)) for t in texts]


def _references(record: dict) -> list[str] | None:
    captions = record.get("captions")
    if isinstance(captions, list) and captions:
        return [str(c) for c in captions]
    if isinstance(record.get("answer"), str):
        return [record["answer"]]
    return None


def caption_metrics(predictions, meteor: bool = True) -> dict:
    """CIDEr-D, BLEU-4, ROUGE-L and (with Java and ``meteor``) METEOR of the predictions.

    References are each record's ``captions`` (else its ``answer``); records without any are
    left out. Returns ``{"n_scored", "CIDEr-D", "BLEU-4", "ROUGE-L", "METEOR", "tokenizer",
    "notes"}``; a metric not computed is ``None``.
    """
    predictions = as_predictions(predictions)
    scored = [(p, _references(p)) for p in predictions]
    scored = [(p, refs) for p, refs in scored if refs is not None]
    result = {"n_scored": len(scored), "CIDEr-D": None, "BLEU-4": None, "ROUGE-L": None, "METEOR": None, "tokenizer": None, "notes": []}
    if not scored:
        result["notes"].append("no prediction has reference 'captions': caption metrics not computed")
        return result
    _pycocoevalcap_dir()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    texts = [p["prediction"] for p, _ in scored] + [r for _, refs in scored for r in refs]
    if java_available():
        tokens, result["tokenizer"] = ptb_tokenize(texts), "ptb"
    else:
        tokens, result["tokenizer"] = simple_tokenize(texts), "simple"
        result["notes"].append("java not found: Python tokenizer used instead of PTB, METEOR skipped; install Java 8+ for the official scores")
    res, gts, at = {}, {}, len(scored)
    for i, (_, refs) in enumerate(scored):
        res[i] = [tokens[i]]
        gts[i] = tokens[at: at + len(refs)]
        at += len(refs)
    result["BLEU-4"] = float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    result["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    result["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if meteor and java_available():
        from pycocoevalcap.meteor.meteor import Meteor

        try:
            scorer = Meteor()
            result["METEOR"] = float(scorer.compute_score(gts, res)[0])
        except (OSError, ValueError) as exc:
            raise XlvlmError(f"METEOR (pycocoevalcap's Java scorer) failed ({exc}); check Java 8+ works, or turn METEOR off")
        finally:
            scorer = None  # its __del__ stops the Java process
    elif not meteor:
        result["notes"].append("METEOR not requested")
    if len(scored) == 1:
        result["notes"].append("CIDEr-D is 0 on a single image: its IDF comes from the evaluated references; score several images")
    if len(scored) < len(predictions):
        result["notes"].append(f"{len(predictions) - len(scored)} predictions without reference captions are left out of the metrics")
    return result


def class_word_frequency(texts: list[str], classes=DEFAULT_WORD_CLASSES) -> dict:
    """``{class: {"share", "per_text", "counts"}}`` for each word class (see the module docstring)."""
    tokenised = [words_of(t) for t in texts]
    report = {}
    for name in classes:
        phrases = {w.lower(): words_of(w) for w in load_word_class(name) if words_of(w)}
        counts: Counter = Counter()
        with_any = 0
        for tokens in tokenised:
            found = 0
            for word, phrase in phrases.items():
                n = len(phrase)
                hits = sum(tokens[i:i + n] == phrase for i in range(len(tokens) - n + 1))
                if hits:
                    counts[word] += hits
                    found += hits
            with_any += found > 0
        total = len(texts)
        report[name] = {
            "share": with_any / total if total else None,
            "per_text": sum(counts.values()) / total if total else None,
            "counts": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        }
    return report


def caption_report(predictions, word_classes=DEFAULT_WORD_CLASSES, meteor: bool = True, baseline=None) -> dict:
    """Caption metrics and class-word frequencies of predictions (and of their references).

    Returns ``{"task": "caption", "n", "metrics": caption_metrics(...),
    "class_words": {class: {...}}, "reference_class_words": {...} or None,
    "baseline_class_words": {...} or None}``; the reference frequencies count every reference
    caption, so a steered model can be compared with how people describe the same images.
    """
    predictions = as_predictions(predictions)
    references = [r for p in predictions for r in (_references(p) or [])]
    base = as_predictions(baseline, "baseline") if baseline is not None else None
    return {
        "task": "caption",
        "n": len(predictions),
        "metrics": caption_metrics(predictions, meteor=meteor),
        "class_words": class_word_frequency([p["prediction"] for p in predictions], word_classes),
        "reference_class_words": class_word_frequency(references, word_classes) if references else None,
        "baseline_class_words": class_word_frequency([p["prediction"] for p in base], word_classes) if base else None,
    }
