"""The workflows' acceptance on the model organism (a small real LLaVA that knows easy-VQA)."""

from collections import Counter

import pytest

import xlvlm
from xlvlm.cli import main
from xlvlm.concepts.grounding.text import ground_text
from xlvlm.apps.organism.data import stratified_subset, vqa_samples


@pytest.fixture(scope="module")
def organism():
    return xlvlm.organism.load("original")


@pytest.fixture(scope="module")
def qa_store(organism, tmp_path_factory):
    questions = [s for s in vqa_samples("test") if s["answer_type"] in ("shape", "color")]
    samples = stratified_subset(questions, per_type=240, seed=0)
    layer = organism.num_layers // 2
    store = xlvlm.extract(organism, samples, layers=[layer], select="last-prompt",
                          out=tmp_path_factory.mktemp("qa") / "store", batch_size=64, progress=False)
    return store, layer


def test_snmf_concepts_are_grounded_in_the_answers_of_their_top_samples(organism, qa_store):
    store, layer = qa_store
    X = store.features(layer, present_only=True)
    vocabulary = frozenset(w for w in organism.tokenizer.get_vocab() if w.isalpha())
    cd = xlvlm.learn_concepts(X, method="snmf", n_concepts=12, seed=0)
    words = ground_text(organism, cd.components, layer, top_k=3, vocabulary=vocabulary)
    mas = xlvlm.ground_images(cd.activations, store.samples, top_k=20)
    agree = []
    for k in range(12):
        if not mas[k]:
            agree.append(False)
            continue
        majority = Counter(store.samples[i]["answer"] for i in mas[k]).most_common(1)[0][0]
        agree.append(bool(words[k]) and words[k][0] == majority)
    assert sum(agree) / len(agree) >= 0.9, list(zip(words, agree))


def test_reduced_demo_runs_and_a_second_run_reuses_it(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    report = (out / "report.html").read_text()
    for section in ("Concepts", "Fine-tuning shift", "Steering sweep", "Activation patching", "Caption steering",
                    "Hallucination steering"):
        assert section in report
    printed = capsys.readouterr().out
    assert all(method in printed for method in ("mean-diff + condition", "P2S (oracle)", "L2S"))  # the table
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # nothing recomputed
