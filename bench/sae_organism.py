"""An SAE trained on an organism store, saved in SAELens's format, loaded back and grounded by
``xlvlm concepts --dictionary``, against snmf learnt by ``xlvlm concepts`` on the same store.

    python bench/sae_organism.py [--seeds 0 1] [--sae 48x2 12x2 ...]

Store: last-prompt states at layer 2 of the original organism for 480 shape and colour test
questions (as bench/organism_results.py). Both runs go through ``run_concepts`` (the same
train/test split, words, 20 MAS); the grounding accuracy is the share of concepts whose top
word equals the majority answer of their 20 most activating samples. Each SAE (``--sae KxA``:
K features, A active per sample): this package's TopKSAE fitted on the train split (2000
steps), written by ``save_sae``, read by ``load_sae``; ``--dictionary`` grounds its 12 most
activated features. snmf: K = 12. Prints a markdown table for docs/organism-results.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import xlvlm
from xlvlm.apps.organism.data import stratified_subset, vqa_samples
from xlvlm.concepts import TopKSAE, save_sae
from xlvlm.concepts.workflow import _test_split, run_concepts

K_GROUNDED = 12


def grounding_accuracy(result: dict) -> tuple[int, int]:
    """(concepts whose top word = the majority answer of their MAS, concepts) of a result.json."""
    agree = 0
    for concept in result["concepts"]:
        answers = [a for a in concept["mas_answers"] if a is not None]
        if concept["words"] and answers:
            agree += concept["words"][0] == Counter(answers).most_common(1)[0][0]
    return agree, len(result["concepts"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sae", nargs="+", default=["12x2", "24x2", "48x2", "48x4"], help="K x active features")
    args = parser.parse_args()
    vlm = xlvlm.organism.load("original")
    questions = [s for s in vqa_samples("test") if s["answer_type"] in ("shape", "color")]
    samples = stratified_subset(questions, per_type=240, seed=0)
    layer = vlm.num_layers // 2
    rows = ["| dictionary | seed | top word = majority answer of 20 MAS | R² (grounded) | R² (whole SAE) |",
            "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = xlvlm.extract(vlm, samples, layers=[layer], select="last-prompt", out=tmp / "store", batch_size=64,
                              progress=False)
        X = store.features(layer, present_only=True)
        common = dict(vlm=vlm, top_k_samples=20, text_similarity=False, heatmaps=0, progress=False)
        for seed in args.seeds:
            train, _ = _test_split(X.shape[0], 0.2, seed)  # the split run_concepts uses
            runs = {"snmf (K = 12)": run_concepts(store, layer, tmp / f"snmf-{seed}", method="snmf",
                                                  n_concepts=K_GROUNDED, seed=seed, **common)}
            for shape in args.sae:
                k_sae, k_active = (int(n) for n in shape.split("x"))
                sae = TopKSAE(n_concepts=k_sae, k_active=k_active, steps=2000, seed=seed).fit(X[train])
                folder = save_sae(sae, tmp / f"sae-{shape}-{seed}", hook_name=f"blocks.{layer}.hook_resid_post")
                runs[f"TopK SAE K = {k_sae}, k = {k_active} (SAELens format), top 12"] = run_concepts(
                    store, None, tmp / f"sae-run-{shape}-{seed}", dictionary=folder, n_concepts=K_GROUNDED, seed=seed,
                    **common)
            for name, result in runs.items():
                agree, total = grounding_accuracy(result)
                whole = result["metrics"].get("sae_reconstruction_r2")
                rows.append(f"| {name} | {seed} | {agree}/{total} ({100 * agree / total:.0f}%) | "
                            f"{result['metrics']['reconstruction_r2']:.3f} | {'' if whole is None else f'{whole:.3f}'} |")
                print(json.dumps({"dictionary": name, "seed": seed, "agree": agree, "total": total}), flush=True)
    print(f"\nLayer {layer} of {vlm.num_layers}, {len(samples)} questions.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
