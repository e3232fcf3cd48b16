"""VQA accuracy with the VQAv2 answer normalisation, answer distributions, targeted reports.

Normalisation (:func:`normalize_answer`), applied to predictions and reference answers alike,
follows the behaviour documented for the official VQAv2 evaluation script:

1. Newlines and tabs become spaces; surrounding spaces are stripped.
2. Punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: if the text contains a digit,
   comma, digit sequence (``1,000``) every such mark is deleted; otherwise a mark is deleted
   when the text has it next to a space (``"yes !"``) and replaced by a space elsewhere
   (``"black-and-white"`` -> ``"black and white"``).
3. A period is deleted unless a digit follows it (``"yes."`` -> ``"yes"``, ``"2.5"`` stays).
4. Lower-case; split on whitespace; number words ``none, zero, one ... ten`` become digits
   (``none`` -> ``0``); the articles ``a, an, the`` are dropped; a contraction written without
   its apostrophe(s) gets them back (``dont`` -> ``don't``, ``couldnt've`` -> ``couldn't've``);
   words are joined by single spaces.

Apostrophes, colons and other marks not listed are kept as they are.

One difference from the official script, on purpose: the official script normalises the
prediction and the annotators' answers only when the annotators disagree, which assumes
predictions arrive already normalised; here both are always normalised, so an unnormalised
prediction ("Yes.") on a unanimous question ("yes" x 10) still counts as correct.

Accuracy of one prediction (:func:`vqa_accuracy`) against ``k`` reference answers, ``m`` of
which equal the prediction after normalisation:

- ``k = 10`` (VQAv2): the official average over the ten leave-one-annotator-out subsets of 9,
  each scoring ``min(matches in the subset / 3, 1)``. In closed form: ``m = 0, 1, 2, 3, >=4``
  gives ``0, 0.3, 0.6, 0.9, 1``.
- ``k = 1`` (a single ``answer``): exact match after normalisation, 0 or 1.
- any other ``k``: the simple form ``min(m / min(k, 3), 1)``.
"""

from __future__ import annotations

import re
from collections import Counter

from xlvlm.errors import XlvlmError
from xlvlm.evaluation.predictions import as_predictions

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})

# Contractions in their written form; every spelling with some or all apostrophes left out
# maps back to it. Left out on purpose: spellings that are English words of their own
# (its, well, were, ill, shell, hell, wed, shed, id, lets, whore).
_CONTRACTIONS = """
ain't aren't can't couldn't couldn't've could've didn't doesn't don't hadn't hadn't've hasn't
haven't he'd he'd've he'll he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll
let's ma'am mightn't mightn't've might've mustn't must've needn't o'clock shan't she'd've
she'll she's shouldn't shouldn't've should've somebody'd somebody'd've somebody'll somebody's
someone'd someone'd've someone'll someone's something'd something'd've something'll that'd
that'd've that'll that's there'd there'd've there'll there're there's they'd they'd've they'll
they're they've wasn't we'd've we're we've weren't what'll what're what's what've when's
where'd where's where've who'd who'd've who'll who're who's who've why'll why're why's won't
would've wouldn't wouldn't've y'all y'all'd've y'all'll you'd you'd've you'll you're you've
"""
_NOT_CONTRACTIONS = frozenset({"its", "well", "were", "ill", "shell", "hell", "wed", "shed", "id", "lets", "whore"})


def _apostrophe_variants(word: str) -> list[str]:
    parts = word.split("'")
    variants = [parts[0]]
    for part in parts[1:]:
        variants = [v + sep + part for v in variants for sep in ("", "'")]
    return [v for v in variants if v != word]


CONTRACTIONS = {
    variant: word
    for word in _CONTRACTIONS.split()
    for variant in _apostrophe_variants(word)
    if variant not in _NOT_CONTRACTIONS
}

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def normalize_answer(text: str) -> str:
    """The VQAv2 normal form of an answer (rules in the module docstring)."""
    text = str(text).replace("\n", " ").replace("\t", " ").strip()
    out = text
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCTUATION:
        if delete_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    out = _PERIOD_NOT_BEFORE_DIGIT.sub("", out)
    words = []
    for word in out.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word in ARTICLES:
            continue
        words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def reference_answers(sample: dict) -> list[str] | None:
    """The annotators' ``answers`` if present, else ``[answer]``, else ``None``."""
    answers = sample.get("answers")
    if isinstance(answers, list) and answers:
        return [a["answer"] if isinstance(a, dict) and "answer" in a else str(a) for a in answers]
    if sample.get("answer") is not None:
        return [str(sample["answer"])]
    return None


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """Accuracy of one prediction against its reference answers (rules in the module docstring)."""
    if not answers:
        raise XlvlmError("vqa_accuracy: no reference answers given")
    predicted = normalize_answer(prediction)
    matches = [normalize_answer(a) == predicted for a in answers]
    k, m = len(matches), sum(matches)
    if k == 10:
        # Leaving out a matching annotator leaves m - 1 matches, leaving out another leaves m.
        return (m * min((m - 1) / 3, 1.0) + (k - m) * min(m / 3, 1.0)) / k
    return min(m / min(k, 3), 1.0)


def answer_distribution(predictions: list[dict]) -> list[dict]:
    """``[{"answer", "count", "share"}]`` of normalised predictions, most common first (ties by answer)."""
    counts = Counter(normalize_answer(p["prediction"]) for p in predictions)
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"answer": a, "count": c, "share": c / total} for a, c in ordered]


def _answer_type(sample: dict) -> str:
    value = sample.get("answer_type")
    return str(value) if value is not None else "unknown"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def vqa_report(predictions) -> dict:
    """Accuracy overall and per answer type, and answer distributions.

    ``predictions``: a JSONL path or a list of ``{"id", "prediction", ...sample fields}``.
    Returns ``{"task": "vqa", "n", "n_scored", "accuracy", "accuracy_mean_over_types",
    "per_type": {type: {"n", "n_scored", "accuracy", "answer_distribution"}},
    "answer_distribution", "notes"}``; accuracies are fractions in [0, 1], ``None`` where no
    prediction has a reference. Samples without ``answer_type`` fall under ``"unknown"``.

    ``accuracy`` is the mean over scored questions (the official VQAv2 "overall");
    ``accuracy_mean_over_types`` the mean over answer types of their accuracies (the research
    code's "overall": each type weighs the same whatever its number of questions).
    """
    predictions = as_predictions(predictions)
    scores: list[float] = []
    by_type: dict[str, list[dict]] = {}
    type_scores: dict[str, list[float]] = {}
    for p in predictions:
        kind = _answer_type(p)
        by_type.setdefault(kind, []).append(p)
        type_scores.setdefault(kind, [])
        answers = reference_answers(p)
        if answers is not None:
            score = vqa_accuracy(p["prediction"], answers)
            scores.append(score)
            type_scores[kind].append(score)
    notes = []
    if not scores:
        notes.append("no prediction has a reference ('answer' or 'answers'): accuracy not computed")
    elif len(scores) < len(predictions):
        notes.append(f"{len(predictions) - len(scores)} predictions without a reference are left out of the accuracy")
    return {
        "task": "vqa",
        "n": len(predictions),
        "n_scored": len(scores),
        "accuracy": _mean(scores),
        "accuracy_mean_over_types": _mean([_mean(v) for v in type_scores.values() if v]),
        "per_type": {
            kind: {
                "n": len(items),
                "n_scored": len(type_scores[kind]),
                "accuracy": _mean(type_scores[kind]),
                "answer_distribution": answer_distribution(items),
            }
            for kind, items in sorted(by_type.items())
        },
        "answer_distribution": answer_distribution(predictions),
        "notes": notes,
    }


TOKEN_ACCURACY_FORMULAS = ("xlvlm", "research")


def token_of_interest_accuracy(predictions, token: str, formula: str = "xlvlm") -> dict:
    """How often the answer is the token of interest (e.g. the target answer of a steering).

    A prediction hits when its normalised answer equals the normalised ``token`` (the VQA rules
    above). formula "xlvlm": the share of hits, a fraction in [0, 1]; "research": the research
    code's number, the VQA accuracy against the one reference ``[token]`` in percent, so
    100 * min(1, hit / 3): a hit scores 33.3, and every value is a third of the xlvlm share.
    Returns ``{"token", "formula", "overall", "overall_mean_over_types", "per_type": {type:
    value}}``: ``overall`` over questions, ``overall_mean_over_types`` over answer types (the
    research code's "overall").
    """
    if formula not in TOKEN_ACCURACY_FORMULAS:
        raise XlvlmError(f"unknown formula {formula!r}: use one of {', '.join(TOKEN_ACCURACY_FORMULAS)}")
    wanted = normalize_answer(token)
    scale = 100.0 / 3 if formula == "research" else 1.0
    per_type: dict[str, list[float]] = {}
    for p in as_predictions(predictions):
        hit = normalize_answer(p["prediction"]) == wanted
        per_type.setdefault(_answer_type(p), []).append(scale * hit)
    type_values = {kind: _mean(values) for kind, values in sorted(per_type.items())}
    return {"token": token, "formula": formula,
            "overall": _mean([v for values in per_type.values() for v in values]),
            "overall_mean_over_types": _mean(list(type_values.values())),
            "per_type": type_values}


def _baseline_by_id(predictions: list[dict], baseline) -> dict[str, dict] | None:
    """``{id: record}`` of ``baseline`` (None without one); every prediction's id must be in it."""
    if baseline is None:
        return None
    base = {r["id"]: r for r in as_predictions(baseline, "baseline")}
    missing = [p["id"] for p in predictions if p["id"] not in base]
    if missing:
        raise XlvlmError(f"baseline: no prediction for id {missing[0]!r} ({len(missing)} missing); use the baseline run on the same samples")
    return base


def _source_questions(predictions: list[dict], source: str) -> tuple[str, list[dict]]:
    """(``"answer_type"`` or ``"answer"``, the source questions): see :func:`targeted_report`."""
    if any(_answer_type(p) == source for p in predictions):
        return "answer_type", [p for p in predictions if _answer_type(p) == source]
    normal_source = normalize_answer(source)

    def is_source(p):
        answers = reference_answers(p)
        if answers is None:
            return False
        single = p.get("answer") if p.get("answer") is not None else Counter(answers).most_common(1)[0][0]
        return normalize_answer(single) == normal_source

    return "answer", [p for p in predictions if is_source(p)]


def _side_effects(items: list[dict], base: dict[str, dict] | None) -> dict:
    """``n``, ``accuracy`` of ``items``, and against ``base``: ``baseline_accuracy``,
    ``accuracy_change``, ``unchanged`` (None without a baseline)."""
    scored = [p for p in items if reference_answers(p) is not None]
    accuracy = _mean([vqa_accuracy(p["prediction"], reference_answers(p)) for p in scored])
    row = {"n": len(items), "accuracy": accuracy, "baseline_accuracy": None, "accuracy_change": None, "unchanged": None}
    if base is not None:
        row["baseline_accuracy"] = _mean([vqa_accuracy(base[p["id"]]["prediction"], reference_answers(p)) for p in scored])
        if accuracy is not None and row["baseline_accuracy"] is not None:
            row["accuracy_change"] = accuracy - row["baseline_accuracy"]
        row["unchanged"] = _mean([
            float(normalize_answer(p["prediction"]) == normalize_answer(base[p["id"]]["prediction"])) for p in items
        ])
    return row


def targeted_report(predictions, source: str, target: str, baseline=None) -> dict:
    """How well steering moved ``source`` questions to ``target``, and what else it moved.

    ``source`` is an answer type (e.g. ``yes/no``, ``color``) when some prediction has that
    ``answer_type``; otherwise a reference answer (e.g. ``yes``): the *source questions* are
    those of that type, or whose reference (``answer``, else the most common of ``answers``)
    normalises to it. The *other types* are the answer types no source question has.

    - ``success``: share of source questions whose normalised prediction equals the
      normalised ``target`` (``baseline_success``: the same on ``baseline``).
    - ``side_effects[type]`` for each other type: ``n``, ``accuracy``, and with a
      ``baseline`` (predictions of the unsteered model on the same ids):
      ``baseline_accuracy``, ``accuracy_change`` (steered minus baseline, in accuracy
      fractions) and ``unchanged`` (share of questions whose normalised prediction equals the
      baseline's). Without a baseline those three are ``None``.
    - ``side_effects_overall``: the same over all other-type questions together.
    """
    predictions = as_predictions(predictions)
    base = _baseline_by_id(predictions, baseline)
    wanted = normalize_answer(target)
    source_kind, sources = _source_questions(predictions, source)
    if not sources:
        raise XlvlmError(f"targeted report: no question has answer type or reference answer {source!r}; check --source against the data")
    source_types = {_answer_type(p) for p in sources}
    others = [p for p in predictions if _answer_type(p) not in source_types]

    def hit_rate(records):
        return _mean([float(normalize_answer(r["prediction"]) == wanted) for r in records])

    by_type: dict[str, list[dict]] = {}
    for p in others:
        by_type.setdefault(_answer_type(p), []).append(p)
    return {
        "source": source,
        "source_kind": source_kind,
        "target": target,
        "n_source": len(sources),
        "success": hit_rate(sources),
        "baseline_success": hit_rate([base[p["id"]] for p in sources]) if base is not None else None,
        "side_effects": {kind: _side_effects(items, base) for kind, items in sorted(by_type.items())},
        "side_effects_overall": _side_effects(others, base) if others else None,
    }
