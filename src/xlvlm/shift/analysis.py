"""Fine-tuning shift analysis (arXiv 2501.03012, "Computing Shift Vectors").

Notation (one layer):
  X_o, X_f  (M, D)  original / fine-tuned representations of the M samples present in both
                    stores, matched by sample id
  V         (K, D)  the original model's concepts;  W (K, D) the fine-tuned model's own
  a(i)      concept assigned to sample i (largest activation; or nearest by cosine / L2)
  d_i       = X_f[i] - X_o[i], the sample's shift
  s_k       = agg_{i: a(i)=k} d_i  (mean, median or 10% trimmed mean): the shift vector
  V'_k      = V_k + alpha * s_k: the shifted concept
  m(k)      the fine-tuned concept matched to V_k by cosine (Hungarian algorithm)

Concepts are compared at the data's scale: decompositions like semi-NMF return unit-norm
components (the scale lives in the activations), and adding a shift measured in the data's
units to a unit vector would be meaningless. Each concept direction is therefore scaled by the
mean projection of its assigned samples on it (for k-means this is about the centroid's norm).

Recovery per concept: cos(V_k, W_m(k)) against cos(V'_k, W_m(k)) and L2 likewise, their
improvement, and two normalisations of the cosine improvement, each under its own name:

  cos_improvement_normalised = (cos' - cos) / (1 - cos)   the share of the gap to a perfect
                                                          match that the shift closes (xlvlm)
  cos_improvement_relative   = (cos' - cos) / cos         the research code's
                                                          "normalized_improved_cosine"

With grounded words / MAS, the intersections of V_k and V'_k with W_m(k), as a fraction
(|A ∩ B| / min(|A|, |B|), xlvlm) and as a count (|A ∩ B|, the research code's). MAS are ranked
by cosine with the concept (``mas_by="cosine"``, default) or by the concept's activation
(``mas_by="activation"``, the research code's: the dictionary's codes, and for the shifted
concepts the method's encoder run on X_f with V' as its dictionary).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from scipy.optimize import linear_sum_assignment

from xlvlm.errors import XlvlmError
from xlvlm.io import check_magnitudes
from xlvlm.settings import settings_with
from xlvlm.shift.registry import AGGREGATES, ASSIGNMENTS, CONCEPT_SCALES, MAS_RANKINGS


def matched_features(original, finetuned, layer) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Rows of samples present in both stores, paired by id, in the original store's order.

    Returns X_o (M, D), X_f (M, D) as float32 and the M ids.
    """
    from xlvlm.features.pairing import paired_rows

    return paired_rows(original, finetuned, layer, "shift analysis")


def _cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, D), (Q, D) -> (P, Q) cosine similarities."""
    return torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T


def assign(X: torch.Tensor, components: torch.Tensor, activations: torch.Tensor | None = None,
           how: str = "activation") -> torch.Tensor:
    """(M,) concept index of each row: largest activation, highest cosine, or nearest (L2)."""
    if how == "activation":
        if activations is None:
            raise XlvlmError("assignment 'activation' needs the activations of the samples")
        return activations.argmax(dim=1)
    if how == "cosine":
        return _cosine_matrix(X, components).argmax(dim=1)
    if how == "l2":
        return torch.cdist(X, components).argmin(dim=1)
    raise XlvlmError(f"unknown assignment {how!r}: use one of {ASSIGNMENTS}")


def aggregate(shifts: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """(n, D) per-sample shifts -> (D,) shift vector."""
    if how == "mean":
        return shifts.mean(0)
    if how == "median":
        return shifts.median(0).values
    if how == "trimmed-mean":
        n = shifts.shape[0]
        cut = int(0.1 * n)
        ordered = shifts.sort(dim=0).values
        return ordered[cut:n - cut].mean(0) if n - 2 * cut > 0 else shifts.mean(0)
    raise XlvlmError(f"unknown aggregate {how!r}: use one of {AGGREGATES}")


def shift_statistics(shifts: torch.Tensor) -> dict:
    """Coherence of one concept's per-sample shifts (n, D).

    mean_pairwise_cosine: mean cos(d_i, d_j) over pairs i < j; mean_cosine_to_mean: mean
    cos(d_i, mean d); magnitude: |mean d|; mean_pairwise_dot: mean d_i . d_j over i < j;
    mean_dot_to_mean: mean d_i . mean d.
    """
    n = shifts.shape[0]
    if n == 0:
        return {"n": 0, "mean_pairwise_cosine": None, "mean_cosine_to_mean": None, "magnitude": None,
                "mean_pairwise_dot": None, "mean_dot_to_mean": None}
    mean = shifts.mean(0)
    unit = torch.nn.functional.normalize(shifts, dim=1)
    upper = torch.triu_indices(n, n, offset=1)
    cos = (unit @ unit.T)[upper[0], upper[1]]
    dots = (shifts @ shifts.T)[upper[0], upper[1]]
    return {
        "n": n,
        "mean_pairwise_cosine": float(cos.mean()) if n > 1 else None,
        "mean_cosine_to_mean": float(torch.nn.functional.cosine_similarity(shifts, mean[None], dim=1).mean()),
        "magnitude": float(mean.norm()),
        "mean_pairwise_dot": float(dots.mean()) if n > 1 else None,
        "mean_dot_to_mean": float((shifts @ mean).mean()),
    }


def match_concepts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K,) index into b of each row of a: one-to-one, maximising total cosine (Hungarian)."""
    cost = -_cosine_matrix(a, b).cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    match = torch.empty(a.shape[0], dtype=torch.long)
    match[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return match


def top_samples(X: torch.Tensor, concepts: torch.Tensor, top_k: int) -> list[list[int]]:
    """MAS by cosine: for each concept (K, D), the ``top_k`` rows of X (M, D) most aligned with it."""
    scores = _cosine_matrix(concepts, X)
    k = min(top_k, X.shape[0])
    return scores.topk(k, dim=1).indices.tolist()


def top_by_activation(activations: torch.Tensor, top_k: int) -> list[list[int]]:
    """MAS by activation: for each concept (column of activations (M, K)), its ``top_k`` rows."""
    k = min(top_k, activations.shape[0])
    return activations.float().topk(k, dim=0).indices.T.tolist()


def encode_with(dictionary, X: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Codes (M, K) of X (M, D) by ``dictionary``'s method with ``components`` (K, D) in place
    of its own (how the research code gets the shifted concepts' activations)."""
    from xlvlm.concepts.registry import get_method

    method = get_method(dictionary.method)
    with torch.no_grad():
        return method.encode(X.to(dictionary.device), components.to(dictionary.device), dictionary.state,
                             dictionary.params).cpu()


def at_data_scale(X: torch.Tensor, components: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, D) concept directions scaled by the mean projection of their assigned rows of X (M, D)."""
    unit = torch.nn.functional.normalize(components, dim=1)
    scaled = components.clone()
    for k in range(components.shape[0]):
        members = X[labels == k]
        if members.shape[0]:
            scaled[k] = unit[k] * (members @ unit[k]).mean()
    return scaled


def _intersection(a: list, b: list) -> float | None:
    """|A ∩ B| / min(|A|, |B|) (None when either is empty)."""
    if not a or not b:
        return None
    return len(set(a) & set(b)) / min(len(a), len(b))


def _intersection_count(a: list, b: list) -> int:
    """|A ∩ B|, as the research code counts it."""
    return len(set(a) & set(b))


def recovery(original: torch.Tensor, shifted: torch.Tensor, finetuned_matched: torch.Tensor) -> list[dict]:
    """Per concept: how much closer the shifted concept is to its matched fine-tuned concept.

    cos_* and l2_* for original and shifted; improvement = shifted minus original (cosine) or
    original minus shifted (L2); normalised: cosine improvement / (1 - cos_original), L2
    improvement / l2_original (1 means the shift closes the whole gap); relative (the research
    code's normalisation): cosine improvement / cos_original (None when cos_original is 0).
    """
    cos = torch.nn.functional.cosine_similarity
    rows = []
    for v, s, w in zip(original, shifted, finetuned_matched):
        c0, c1 = float(cos(v, w, dim=0)), float(cos(s, w, dim=0))
        l0, l1 = float((v - w).norm()), float((s - w).norm())
        rows.append({
            "cos_original": c0, "cos_shifted": c1, "cos_improvement": c1 - c0,
            "cos_improvement_normalised": (c1 - c0) / (1 - c0) if 1 - c0 > 1e-12 else 0.0,
            "cos_improvement_relative": (c1 - c0) / c0 if abs(c0) > 1e-12 else None,
            "l2_original": l0, "l2_shifted": l1, "l2_improvement": l0 - l1,
            "l2_improvement_normalised": (l0 - l1) / l0 if l0 > 1e-12 else 0.0,
        })
    return rows


@dataclass
class ShiftResult:
    """Everything ``analyse_shift`` computed (shapes: K concepts, M matched samples, D)."""

    layer: str
    ids: list[str]
    original: object            # ConceptDictionary learnt on X_o
    finetuned: object           # ConceptDictionary learnt on X_f
    assignment: torch.Tensor    # (M,) concept of each matched sample
    shift_vectors: torch.Tensor  # (K, D)
    original_concepts: torch.Tensor  # (K, D) original concepts at the data's scale
    shifted_concepts: torch.Tensor  # (K, D) original_concepts + alpha * shift_vectors
    finetuned_concepts: torch.Tensor  # (K, D) fine-tuned concepts at the data's scale (unmatched order)
    match: torch.Tensor         # (K,) fine-tuned concept matched to each original concept
    recovery: list[dict]
    stats: list[dict]
    mas: dict = field(default_factory=dict)       # original / shifted / finetuned: K lists of sample indices
    words: dict = field(default_factory=dict)     # original / shift / shifted / finetuned: K word lists
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        improved = [r["cos_shifted"] > r["cos_original"] for r in self.recovery]
        return {"n_concepts": len(self.recovery), "n_samples": len(self.ids),
                "share_closer_by_cosine": sum(improved) / max(1, len(improved)),
                "mean_cos_original": sum(r["cos_original"] for r in self.recovery) / max(1, len(self.recovery)),
                "mean_cos_shifted": sum(r["cos_shifted"] for r in self.recovery) / max(1, len(self.recovery))}


def _check_shift_inputs(original_store, finetuned_store, layer, vlm, aggregate_by: str, mas_by: str) -> str:
    """The layer key of both stores, once the choices, the model and hidden sizes are checked."""
    from xlvlm.hooks import require_vlm

    if vlm is not None:
        require_vlm(vlm, "analyse_shift")
    if aggregate_by not in AGGREGATES:
        raise XlvlmError(f"unknown aggregate {aggregate_by!r}: use one of {AGGREGATES}")
    if mas_by not in MAS_RANKINGS:
        raise XlvlmError(f"unknown MAS ranking {mas_by!r}: use one of {MAS_RANKINGS}")
    key = original_store.layer_key(layer)
    finetuned_store.layer_key(key)
    sizes = {"--original": original_store.hidden_size, "--finetuned": finetuned_store.hidden_size}
    if vlm is not None:
        sizes[f"--model {vlm.name}"] = vlm.hidden_size
    if len(set(sizes.values())) > 1:
        raise XlvlmError("hidden sizes differ: " + ", ".join(f"{name} {size}" for name, size in sizes.items())
                         + "; shift analysis compares a model with its own fine-tuned version (and grounds words "
                           "with one of them)")
    return key


def _shift_vectors(X_o: torch.Tensor, X_f: torch.Tensor, labels: torch.Tensor, V: torch.Tensor,
                   s) -> tuple[torch.Tensor, list[dict]]:
    """``(K, D)`` aggregated shift of each concept's samples (zero for a concept without any),
    and each concept's shift statistics (of the per-sample shifts). ``s``: the ShiftSettings."""
    shifts = X_f - X_o
    shift_vectors = torch.zeros_like(V)
    stats = []
    for k in range(V.shape[0]):
        rows = labels == k
        if rows.any():
            shift_vectors[k] = (aggregate(X_f[rows], s.aggregate_by) - aggregate(X_o[rows], s.aggregate_by)
                                if s.aggregate_sides else aggregate(shifts[rows], s.aggregate_by))
        stats.append(shift_statistics(shifts[rows]))
    return shift_vectors, stats


def _concepts_at(scale: str, X: torch.Tensor, directions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The concepts compared and shifted: at the data's scale, or as learnt."""
    return at_data_scale(X, directions, labels) if scale == "data" else directions.clone()


def _research_options(s) -> dict:
    """The research-code options that differ from the defaults (recorded only then)."""
    return {**({"concept_scale": s.concept_scale} if s.concept_scale != "data" else {}),
            **({"aggregate_sides": True} if s.aggregate_sides else {})}


def _most_activating(mas_by: str, top_k: int, X_o, X_f, V, shifted, W, match, original, activations,
                     finetuned) -> dict:
    """Top samples of each original, shifted and (matched) fine-tuned concept, ranked by cosine
    or by activation (see the module docstring). ``X_o``, ``X_f``: (M, D); ``V``, ``shifted``,
    ``W``: (K, D) at the data's scale; ``match``: (K,); ``original``/``finetuned``: the two
    dictionaries, ``activations``: (M, K) of ``original`` on ``X_o``."""
    if mas_by == "cosine":
        return {"original": top_samples(X_o, V, top_k), "shifted": top_samples(X_f, shifted, top_k),
                "finetuned": [top_samples(X_f, W, top_k)[m] for m in match.tolist()]}
    shifted_codes = encode_with(original, X_f, shifted)
    return {"original": top_by_activation(activations.cpu(), top_k),
            "shifted": top_by_activation(shifted_codes, top_k),
            "finetuned": [top_by_activation(finetuned.activations.cpu(), top_k)[m] for m in match.tolist()]}


def _add_intersections(rec: list[dict], groups: dict, what: str) -> None:
    """Each recovery row gets ``{what}_{original,shifted}_vs_finetuned`` (share) and ``..._count``."""
    for k, row in enumerate(rec):
        for name in ("original", "shifted"):
            row[f"{what}_{name}_vs_finetuned"] = _intersection(groups[name][k], groups["finetuned"][k])
            row[f"{what}_{name}_vs_finetuned_count"] = _intersection_count(groups[name][k], groups["finetuned"][k])


@dataclass(frozen=True)
class ShiftSettings:
    """What :func:`analyse_shift` computes.

    n_concepts, method, seed, method_options: the two dictionaries
    (:func:`xlvlm.concepts.learn_concepts`); assignment, aggregate_by, alpha: how rows join
    concepts, how their shifts are aggregated, how far the concepts are shifted; mas_by,
    top_k_samples: the most-activating samples; top_k_words, words_vocabulary, word_filter: words
    (with a model). The result's ``settings`` record them but top_k_samples, top_k_words and the
    vocabulary. concept_scale: "data" (concepts scaled to their rows, the module docstring) or
    "learnt" (the components as the method returns them, as the research code adds the shift);
    aggregate_sides: the research code's shift, agg(fine-tuned rows) - agg(original rows) of
    each concept, instead of agg(per-sample differences) (the same for the mean, not for the
    median or the trimmed mean). The last two are recorded only when not the default.
    """

    n_concepts: int = 20
    method: str = "snmf"
    seed: int = 0
    method_options: dict = field(default_factory=dict)
    assignment: str = "activation"
    aggregate_by: str = "mean"
    alpha: float = 1.0
    mas_by: str = "cosine"
    top_k_samples: int = 10
    top_k_words: int = 10
    words_vocabulary: object = None
    word_filter: str = "xlvlm"
    concept_scale: str = "data"
    aggregate_sides: bool = False


def _refit_method(original, method: str) -> str:
    """The method of the fine-tuned model's concepts: the original dictionary's, unless it was
    loaded rather than learnt (a pretrained SAE), which ``method`` then stands in for."""
    from xlvlm.concepts import METHODS

    own = getattr(original, "method", method)
    return own if own in METHODS else method


def _shift_words(vlm, key: str, s, vectors: dict) -> dict:
    """The words of each kind of concept (``{name: (K, D)}``) through ``vlm``'s unembedding, and
    the model's name (``unembedding``)."""
    from xlvlm.concepts.grounding.text import ground_text

    words = {name: ground_text(vlm, V, key, top_k=s.top_k_words, vocabulary=s.words_vocabulary,
                               word_filter=s.word_filter) for name, V in vectors.items()}
    return {**words, "unembedding": vlm.name}


def _recorded(s, key: str, K: int, original, finetuned, original_store, finetuned_store) -> dict:
    """The settings a shift result records (the research options and a fine-tuned method that
    differs only when they apply)."""
    method = getattr(original, "method", s.method)
    return {"layer": key, "n_concepts": K, "method": method, "assignment": s.assignment, "aggregate": s.aggregate_by,
            "alpha": s.alpha, "seed": s.seed, "mas_by": s.mas_by, "word_filter": s.word_filter,
            "original_store": str(original_store.path), "finetuned_store": str(finetuned_store.path),
            **_research_options(s), **({"finetuned_method": finetuned.method} if finetuned.method != method else {})}


def analyse_shift(original_store, finetuned_store, layer, settings: ShiftSettings | None = None, *,
                  original_concepts=None, vlm=None, **options) -> ShiftResult:
    """Shift vectors of the original model's concepts under fine-tuning, and their recovery.

    settings: a :class:`ShiftSettings`, or its fields as keywords (``options``; a name that is no
    field is an option of the concept method). original_concepts: a dictionary of the original
    model to use instead of learning one.
    vlm: when given, concepts, shift vectors and shifted concepts are grounded in words through
    its unembedding and word intersections are reported. The research script unembeds with the
    original (base) model; passing the fine-tuned one reads the fine-tuned model's own readout.
    The name of the model used is recorded (``words["unembedding"]``).
    mas_by: "cosine" (default) or "activation" (the research code's ranking), see the module
    docstring. word_filter: "xlvlm" or "research" (see :mod:`xlvlm.concepts.grounding.text`).
    original_concepts: a dictionary to start from instead of learning one (e.g. a pretrained
    SAE's selected features); the fine-tuned concepts are then learnt with its method, or with
    ``method`` when it was loaded rather than learnt.
    """
    s = settings_with(ShiftSettings, settings, options, "analyse_shift", rest="method_options")
    from xlvlm.concepts import learn_concepts

    if s.concept_scale not in CONCEPT_SCALES:
        raise XlvlmError(f"unknown concept scale {s.concept_scale!r}: use one of {', '.join(CONCEPT_SCALES)}")
    key = _check_shift_inputs(original_store, finetuned_store, layer, vlm, s.aggregate_by, s.mas_by)
    X_o, X_f, ids = matched_features(original_store, finetuned_store, key)
    remedy = "check the stores with FeatureStore.verify() and extract them again"
    for store, states in ((original_store, X_o), (finetuned_store, X_f), (finetuned_store, X_f - X_o)):
        check_magnitudes({key: states}, f"shift analysis of {store.path}", remedy, noun="states")
    if original_concepts is None:
        original = learn_concepts(X_o, method=s.method, n_concepts=s.n_concepts, seed=s.seed, **s.method_options)
        activations = original.activations
    else:
        original = original_concepts
        activations = original.transform(X_o)
    directions = original.components.float().cpu()
    K = directions.shape[0]
    labels = assign(X_o, directions, activations.cpu(), how=s.assignment)
    V = _concepts_at(s.concept_scale, X_o, directions, labels)
    shift_vectors, stats = _shift_vectors(X_o, X_f, labels, V, s)
    shifted = V + s.alpha * shift_vectors
    finetuned = learn_concepts(X_f, method=_refit_method(original, s.method), n_concepts=K, seed=s.seed,
                               **s.method_options)
    W_directions = finetuned.components.float().cpu()
    W = _concepts_at(s.concept_scale, X_f, W_directions,
                     assign(X_f, W_directions, finetuned.activations.cpu(), how=s.assignment))
    match = match_concepts(V, W)
    rec = recovery(V, shifted, W[match])
    mas = _most_activating(s.mas_by, s.top_k_samples, X_o, X_f, V, shifted, W, match, original, activations, finetuned)
    _add_intersections(rec, mas, "mas")
    words = {} if vlm is None else _shift_words(vlm, key, s, {"original": V, "shift": shift_vectors,
                                                              "shifted": shifted, "finetuned": W[match]})
    if words:
        _add_intersections(rec, words, "words")
    settings = _recorded(s, key, K, original, finetuned, original_store, finetuned_store)
    return ShiftResult(key, ids, original, finetuned, labels, shift_vectors, V, shifted, W, match, rec, stats, mas,
                       words, settings)
