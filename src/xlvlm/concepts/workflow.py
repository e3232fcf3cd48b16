"""The concepts workflow: store -> dictionary -> grounding -> metrics -> figures -> files.

Output folder::

    dictionary/            the ConceptDictionary (safetensors + JSON)
    result.json            {"stage": "concepts", ...}: per concept grounded words (without the chat
                           template's own words, see xlvlm.concepts.readable), MAS ids, and top
                           samples (id, image, question, answer); settings; metrics
    concept_grid.png       MAS thumbnails with question and answer under each, words per concept
    patch_heatmaps.png     where the first concepts fire in their top image (with a model)
    command.txt            the command that wrote them (when given)

written as one unit (:class:`xlvlm.io.OutputUnit`): result.json, last, lists the SHA-256 of
every other file, and a run that stops early leaves the previous outputs as they were.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from xlvlm.concepts.readable import readable_words, template_words, top_sample
from xlvlm.errors import XlvlmError
from xlvlm.io import RESULT_FILE, OutputUnit, atomic_write_json, atomic_write_text, check_magnitudes, stage_result
from xlvlm.settings import settings_with

# What a previous run may have left that this one replaces.
OWNED = ["dictionary", "concept_grid.png", "patch_heatmaps.png", "command.txt"]


def _caption(sample: dict) -> str:
    """Question and answer of a sample, for the text under its thumbnail."""
    view = top_sample(sample)
    answer = "" if view["answer"] is None else f"\nA: {view['answer']}"
    return f"Q: {view['question'] or ''}{answer}"


def _test_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_test = int(round(n * test_fraction))
    return order[n_test:].sort().values, order[:n_test].sort().values


def _present_features(store, key: str, vlm) -> tuple[list[dict], torch.Tensor]:
    """The store's present samples and their ``(N, D)`` float features at ``key``, checked
    against the model and for one row per sample."""
    if vlm is not None and vlm.hidden_size != store.hidden_size:
        raise XlvlmError(f"store {store.path} has hidden size {store.hidden_size} but the model {vlm.name} has "
                         f"{vlm.hidden_size}; give the --model the store was extracted with")
    if store.settings.rows_per_sample != 1:
        raise XlvlmError(f"store {store.path} has several rows per sample; concepts need one row per sample")
    present = store.present
    samples = [s for s, ok in zip(store.samples, present.tolist()) if ok]
    X = store.features(key, present_only=True).float()
    if len(samples) < 2:
        raise XlvlmError(f"store {store.path} has {len(samples)} present samples; concepts need more")
    check_magnitudes({key: X}, f"store {store.path}", "check it with FeatureStore.verify() and extract it again",
                     noun="states")
    return samples, X


def _ground_words(vlm, cd, key: str, X: torch.Tensor, top_k_words: int, vocabulary, seed: int,
                  word_filter: str) -> tuple[list[list[str]], list[list[str]], frozenset[str]]:
    """Readable words of each concept and of as many random directions at the data's scale (the
    baseline), and the template words left out of both."""
    from xlvlm.concepts.grounding.text import ground_text, random_word_baseline

    # Ask for enough words that top_k_words remain once the template's own are dropped. The
    # research filter reproduces the research code, which keeps them.
    excluded = template_words(vlm) if word_filter == "xlvlm" else frozenset()
    wide = top_k_words + len(excluded)
    words = [readable_words(w, excluded, top_k_words)
             for w in ground_text(vlm, cd.components, key, top_k=wide, vocabulary=vocabulary,
                                  word_filter=word_filter)]
    scale = float(X.norm(dim=1).mean())
    baseline_words = [readable_words(w, excluded, top_k_words) for w in random_word_baseline(
        vlm, n=cd.components.shape[0], layer=key, top_k=wide, seed=seed, scale=scale, vocabulary=vocabulary,
        word_filter=word_filter)]
    return words, baseline_words, excluded


def _test_scores(cd, X_test: torch.Tensor, test_samples: list[dict], words: list[list[str]],
                 baseline_words: list[list[str]], clip_model: str | None, text_similarity: bool) -> dict:
    """CLIPScore and text similarity of the top 1 and 3 concepts' words on the held-out samples,
    and the same with random words in place of each concept's."""
    from xlvlm.concepts.grounding.scores import (ClipScorer, TextSimilarity, reference_text, top_concept_words,
                                                 top_concepts_words)

    metrics = {}
    activations = cd.transform(X_test)
    shuffled = [baseline_words[k % len(baseline_words)] for k in range(len(words))]
    # Each scorer loads its model once, outside the loop.
    scorer = ClipScorer(clip_model) if clip_model else None
    encoder = TextSimilarity() if text_similarity else None
    images = [s["image"] for s in test_samples]
    refs = [reference_text(s) for s in test_samples]
    for n in (1, 3):
        chosen = top_concept_words(activations, words, n)
        chance = top_concept_words(activations, shuffled, n)
        if scorer is not None:
            # The research definition (one sentence per concept, mean over the top n) and
            # the word-by-word variant, each under its own name.
            metrics[f"clipscore_top{n}"] = scorer.score(images, top_concepts_words(activations, words, n))
            metrics[f"clipscore_top{n}_random_words"] = scorer.score(
                images, top_concepts_words(activations, shuffled, n))
            metrics[f"clipscore_words_top{n}"] = scorer.score_words(images, chosen)
            metrics[f"clipscore_words_top{n}_random_words"] = scorer.score_words(images, chance)
        if encoder is not None:
            metrics[f"text_similarity_top{n}"] = encoder.score(refs, chosen)
            metrics[f"text_similarity_top{n}_random_words"] = encoder.score(refs, chance)
    return metrics


def _concept_entries(mas: list[list[int]], words: list[list[str]], samples: list[dict],
                     features: list[int] | None = None) -> list[dict]:
    """result.json's entry of each concept: its words and most activating samples (and, for
    an SAE's selected features, the feature's index in the SAE)."""
    return [{"concept": k, **({} if features is None else {"feature": features[k]}), "words": words[k],
             "mas": [samples[i]["id"] for i in mas[k]], "mas_answers": [samples[i].get("answer") for i in mas[k]],
             "top_samples": [top_sample(samples[i]) for i in mas[k]]} for k in range(len(mas))]


def _source_name(dictionary) -> str:
    """How result.json names a given dictionary: its path, or that it was passed in memory."""
    return str(dictionary) if isinstance(dictionary, (str, os.PathLike)) else "(in memory)"


def _draw_grid(mas: list[list[int]], words: list[list[str]], samples: list[dict], path) -> None:
    """concept_grid.png: each concept's words and most activating samples, captioned."""
    from xlvlm.figures import concept_grid

    # A store of features made elsewhere (FeatureStore.from_tensors) may name no image.
    shown = [[i for i in mas[k] if samples[i].get("image")] for k in range(len(mas))]
    rows = [[{"label": f"concept {k}", "words": words[k], "images": [samples[i]["image"] for i in shown[k]],
              "captions": [_caption(samples[i]) for i in shown[k]]}]
            for k in range(len(mas))]
    concept_grid(rows, path)


def _draw_heatmaps(vlm, cd, key: str, mas: list[list[int]], words: list[list[str]], samples: list[dict],
                   heatmaps: int, path) -> str | None:
    """patch_heatmaps.png for the first ``heatmaps`` concepts with a top sample; returns why it
    was skipped (``"skipped: ..."``), or None when drawn."""
    from xlvlm.concepts.grounding.patches import draw_heatmaps, patch_heatmaps

    chosen = [k for k in range(len(mas)) if mas[k]][:heatmaps]
    tops = [samples[mas[k][0]] for k in chosen]
    try:
        maps = patch_heatmaps(vlm, tops, key, cd.components[chosen])
        draw_heatmaps(tops, maps, [f"concept {k}: {', '.join(words[k][:2])}" for k in chosen], path)
    except XlvlmError as exc:
        return f"skipped: {exc}"
    return None


@dataclass(frozen=True)
class ConceptSettings:
    """What :func:`run_concepts` learns and grounds.

    method, n_concepts, seed, method_options: the dictionary (:func:`xlvlm.concepts.learn_concepts`);
    test_fraction: the held-out share of the present samples; top_k_words / vocabulary /
    word_filter: words per concept (with a model); top_k_samples: most-activating samples per
    concept; clip_model / text_similarity: the held-out scores; heatmaps: how many concepts get
    patch heatmaps. ``result.json`` records method, n_concepts, seed, method_options (as
    ``options``) and word_filter.
    """

    method: str = "snmf"
    n_concepts: int = 20
    seed: int = 0
    method_options: dict = field(default_factory=dict)
    test_fraction: float = 0.2
    top_k_words: int = 10
    top_k_samples: int = 20
    vocabulary: object = None
    word_filter: str = "xlvlm"
    clip_model: str | None = None
    text_similarity: bool = True
    heatmaps: int = 4
    dictionary: object = None
    features: object = None


def _dictionary(X: torch.Tensor, given, method: str, n_concepts: int, seed: int, features, options: dict):
    """The dictionary of the run (learnt from X (N, D), or the given one with its codes of X)
    and its model-free metrics (an SAE's own, over all its features, beside)."""
    from xlvlm.concepts import learn_concepts
    from xlvlm.concepts.metrics import dead_concepts, reconstruction_r2, sparsity

    if given is None:
        cd, metrics = learn_concepts(X, method=method, n_concepts=n_concepts, seed=seed, **options), {}
    else:
        from xlvlm.concepts.given_dictionary import dictionary_for

        cd, metrics = dictionary_for(given, X, n_concepts, features)
    return cd, {"reconstruction_r2": float(reconstruction_r2(X, cd)),
                "sparsity": float(sparsity(cd.activations)), "dead_concepts": dead_concepts(cd.activations), **metrics}


def _words(vlm, cd, key: str, X: torch.Tensor, test_samples: list[dict], test: torch.Tensor, s, metrics: dict):
    """Each concept's words, the random-word baseline's and the template words left out (all
    empty without a model); the overlaps and the held-out scores go into ``metrics``."""
    from xlvlm.concepts.metrics import overlap

    if vlm is None:
        return [[] for _ in range(cd.components.shape[0])], [], frozenset()
    words, baseline_words, excluded = _ground_words(vlm, cd, key, X, s.top_k_words, s.vocabulary, s.seed,
                                                    s.word_filter)
    metrics["overlap"] = overlap(words)
    metrics["overlap_random_words"] = overlap(baseline_words)
    if len(test):
        metrics.update(_test_scores(cd, X[test], test_samples, words, baseline_words, s.clip_model,
                                    s.text_similarity))
    return words, baseline_words, excluded


def run_concepts(store, layer, out, settings: ConceptSettings | None = None, *, vlm=None, progress: bool = True,
                 command: str | None = None, **options) -> dict:
    """Learn and ground a concept dictionary from ``store`` at ``layer``; write it to ``out``.

    settings: a :class:`ConceptSettings`, or its fields as keywords (``options``; a name that is
    no field is an option of the method, as ``activation=`` for ``simple``). The dictionary is
    learnt on a train split (1 - test_fraction of the present samples); CLIPScore and text
    similarity are measured on the held-out test samples. ``command``: the text of
    ``command.txt``. Returns the summary written to ``result.json``. ``dictionary``: ground this
    one instead of learning one (a saved dictionary or a pretrained SAE,
    :mod:`xlvlm.concepts.given_dictionary`; ``layer`` None: the SAE's own): an SAE grounds
    ``features`` (its indices) or its ``n_concepts`` features most activated on the train split.
    """
    s = settings_with(ConceptSettings, settings, options, "run_concepts", rest="method_options")
    from xlvlm.concepts.grounding.images import ground_images
    from xlvlm.hooks import require_vlm

    if vlm is not None:  # before any output exists: a bare transformers model fails in one line
        require_vlm(vlm, "run_concepts")
    given = None
    if s.dictionary is not None:  # opened and checked against the store before any output exists
        from xlvlm.concepts.given_dictionary import open_for_store

        given, layer = open_for_store(s.dictionary, layer, store, vlm)
    key = store.layer_key(layer)
    samples, X = _present_features(store, key, vlm)
    train, test = (_test_split(len(samples), s.test_fraction, s.seed) if s.test_fraction > 0
                   else (torch.arange(len(samples)), torch.arange(0)))
    with OutputUnit(out, RESULT_FILE, OWNED) as unit:
        out = unit.work  # everything goes into the unit's work folder until the commit
        cd, metrics = _dictionary(X[train], given, s.method, s.n_concepts, s.seed, s.features, s.method_options)
        cd.save(out / "dictionary")
        train_samples = [samples[i] for i in train.tolist()]
        mas = ground_images(cd.activations, train_samples, top_k=s.top_k_samples)
        words, baseline_words, excluded = _words(vlm, cd, key, X, [samples[i] for i in test.tolist()], test, s,
                                                 metrics)
        _draw_grid(mas, words, train_samples, out / "concept_grid.png")
        if vlm is not None and s.heatmaps:
            skipped = _draw_heatmaps(vlm, cd, key, mas, words, train_samples, s.heatmaps, out / "patch_heatmaps.png")
            if skipped is not None:
                metrics["patch_heatmaps"] = skipped
        settings = {"store": str(store.path), "layer": key, "method": cd.method, "n_concepts": cd.n_concepts,
                    "seed": s.seed, "n_train": len(train), "n_test": len(test), "model": getattr(vlm, "name", None),
                    "options": s.method_options, "word_filter": s.word_filter,
                    "template_words_removed": sorted(excluded),
                    **({} if given is None else {"dictionary": _source_name(s.dictionary),
                                                 "features": cd.params.get("features")})}
        summary = stage_result("concepts", settings=settings, metrics=metrics,
                               concepts=_concept_entries(mas, words, train_samples, cd.params.get("features")),
                               random_words=baseline_words)
        atomic_write_json(out / RESULT_FILE, summary)
        if command is not None:
            atomic_write_text(out / "command.txt", command)
        unit.commit()
    return summary
