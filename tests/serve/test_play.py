"""The playground (model side of ``xlvlm serve``) on the model organism and a small run folder.

The run folder is built here the way the demo builds its own (extract -> concepts, two stores ->
a yes -> no vector file), with the images copied inside it. Oracles: transformers' own forward
pass for the next-token probabilities and hidden states, ``extract`` + ``dictionary.transform``
for concept activations, the unsteered model for alpha 0.
"""

from __future__ import annotations

import io
import math
import shutil
import struct
import threading
import zlib

import pytest
import torch
from PIL import Image

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.serve.play import WORKER_NAME, Playground, resolve_under

LAYER = 2  # the organism's middle layer, where the demo steers


def _copy_images(samples, folder):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in samples:
        target = folder / f"{s['image_id']}.png"
        shutil.copyfile(s["image"], target)
        out.append(dict(s, image=str(target)))
    return out


@pytest.fixture(scope="module")
def organism():
    return xlvlm.organism.load("original")


@pytest.fixture(scope="module")
def run(organism, tmp_path_factory):
    """A run folder: stores of yes- and no-answered questions, a yes -> no vector file, a
    concepts stage (dictionary + result.json) and a store of yes-answered test questions."""
    from xlvlm.apps.demo import _answer_pairs
    from xlvlm.apps.organism.data import vqa_samples
    from xlvlm.concepts.workflow import run_concepts
    from xlvlm.steer import SteeringVector

    root = tmp_path_factory.mktemp("run")
    yes, no = _answer_pairs(vqa_samples("train"), "yes", "no", 16)
    yes, no = _copy_images(yes, root / "images" / "train"), _copy_images(no, root / "images" / "train")
    stores = {name: xlvlm.extract(organism, rows, layers=[1, LAYER, 3], out=root / "features" / name, progress=False)
              for name, rows in (("yes", yes), ("no", no))}
    SteeringVector.mean_difference(stores["yes"], stores["no"], [1, LAYER, 3]).save(root / "steer" / "yes-no.safetensors")
    test = vqa_samples("test")
    questions = _copy_images([s for s in test if s["answer_type"] in ("shape", "color")][:30], root / "images" / "test")
    qa = xlvlm.extract(organism, questions, layers=[LAYER], out=root / "features" / "qa", progress=False)
    run_concepts(qa, LAYER, root / "concepts", method="snmf", n_concepts=4, vlm=organism, text_similarity=False,
                 heatmaps=0, top_k_samples=3, progress=False)
    test_yes = _copy_images([s for s in test if s["answer"] == "yes"][:4], root / "images" / "test")
    xlvlm.extract(organism, test_yes, layers=[LAYER], out=root / "features" / "test-yes", progress=False)
    return root


@pytest.fixture(scope="module")
def play(run, organism):
    with Playground(run, organism) as playground:
        yield playground


def _ref(store, sample_id):
    return {"store": store, "id": sample_id}


def _image_path(run, store, sample_id):
    return next(s["image"] for s in xlvlm.FeatureStore(run / store).samples if s["id"] == sample_id)


def _test_yes(play):
    return [_ref("features/test-yes", s["id"]) for s in play.samples("features/test-yes")]


# ---- what the run holds ------------------------------------------------------------------------
def test_catalogue_lists_stores_dictionary_and_vector_file(play):
    assert {s["name"] for s in play.stores()} == {"features/yes", "features/no", "features/qa", "features/test-yes"}
    (dictionary,) = play.dictionaries()
    assert dictionary["name"] == "concepts/dictionary" and dictionary["usable"]
    assert (dictionary["layer"], dictionary["selector"], dictionary["store"]) == (str(LAYER), "last-prompt", "features/qa")
    files = [v for v in play.vectors() if v["kind"] == "file"]
    assert [(v["name"], v["layers"], v["fits"]) for v in files] == [("steer/yes-no.safetensors", ["1", "2", "3"], True)]


# ---- steering: the slider's behaviour -----------------------------------------------------------
def test_alpha_turns_yes_answers_into_no(play):
    """What the browser test checks through the slider: alpha 0 leaves "yes", alpha >= 1.5 at the
    middle layer gives "no" (measured on this vector: 1.5 to 8 all flip)."""
    for ref in _test_yes(play):
        still = play.steer(ref, vector="steer/yes-no.safetensors", alpha=0.0, layer=LAYER)
        assert still["unsteered"]["answer"] == still["steered"]["answer"] == "yes" and not still["changed"]
        assert still["steered"]["top_k"] == still["unsteered"]["top_k"]
        for alpha in (2.0, 4.0):
            moved = play.steer(ref, vector="steer/yes-no.safetensors", alpha=alpha, layer=LAYER)
            assert moved["unsteered"]["answer"] == "yes" and moved["steered"]["answer"] == "no", (ref, alpha)
            assert moved["changed"] and moved["layers"] == [str(LAYER)]


def test_probability_of_no_grows_with_alpha(play):
    ref = _test_yes(play)[0]

    def p_no(alpha):
        step = play.steer(ref, vector="steer/yes-no.safetensors", alpha=alpha, layer=LAYER, top_k=50)["steered"]
        return next((t["prob"] for t in step["top_k"][0] if t["token"] == "no"), 0.0)

    probs = [p_no(a) for a in (0.0, 0.5, 1.0, 1.5)]
    assert probs == sorted(probs) and probs[0] < 0.1 < 0.5 < probs[-1]


def test_computed_vectors_match_the_file_and_are_cached(play, organism, run):
    from xlvlm.steer import SteeringVector

    from_stores = play.compute_vector("features/yes", "features/no")
    assert from_stores["kind"] == "computed" and from_stores["layers"] == ["1", "2", "3"]
    saved = SteeringVector.load(run / "steer" / "yes-no.safetensors")
    assert from_stores["norms"] == {k: round(n, 6) for k, n in saved.norms().items()}
    assert play.compute_vector("features/yes", "features/no")["name"] == from_stores["name"]  # the cache
    # From two lists of samples (extracted on the spot): the same mean difference as the stores'.
    pairs = play.samples("features/yes"), play.samples("features/no")
    from_samples = play.compute_vector([_ref(s["store"], s["id"]) for s in pairs[0]],
                                       [_ref(s["store"], s["id"]) for s in pairs[1]], layers=[LAYER])
    assert from_samples["name"] != from_stores["name"]
    assert math.isclose(from_samples["norms"][str(LAYER)], from_stores["norms"][str(LAYER)], rel_tol=1e-4)
    answer = play.steer(_test_yes(play)[0], vector=from_samples["name"], alpha=2.0)
    assert answer["steered"]["answer"] == "no"
    # From two answers: the rows of a store whose samples have that reference answer.
    by_answer = play.compute_vector({"store": "features/yes", "answer": "yes"}, {"store": "features/no", "answer": "no"})
    assert by_answer["norms"] == from_stores["norms"] and by_answer["name"] not in (from_stores["name"], from_samples["name"])
    with pytest.raises(XlvlmError, match="no present sample answered 'maybe'"):
        play.compute_vector({"store": "features/yes", "answer": "maybe"}, "features/no")
    assert {v["name"] for v in play.vectors() if v["kind"] == "computed"} == {
        from_stores["name"], from_samples["name"], by_answer["name"]}


# ---- answers: the oracles ------------------------------------------------------------------------
def _direct_inputs(organism, image, prompt):
    """transformers' own path: the processor's chat template, the processor, batch size 1."""
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = organism.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return organism.processor(images=image, text=text, return_tensors="pt")


def test_top_k_equals_a_direct_transformers_forward(play, organism, run):
    sample = play.samples("features/qa")[0]
    image = Image.open(_image_path(run, "features/qa", sample["id"])).convert("RGB")
    got = play.answer(image, sample["prompt"], top_k=4, max_new_tokens=2)
    inputs = _direct_inputs(organism, image, sample["prompt"])
    ids = inputs["input_ids"]
    for step in range(2):
        with torch.no_grad():
            logits = organism.model(**dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))).logits[0, -1]
        probs, top = logits.float().softmax(-1).topk(4)
        assert [t["id"] for t in got["top_k"][step]] == top.tolist()
        assert torch.allclose(torch.tensor([t["prob"] for t in got["top_k"][step]]), probs, atol=1e-5)
        ids = torch.cat([ids, top[:1][None]], dim=1)  # greedy: the most probable token comes next
    assert got["answer"] == organism.tokenizer.decode(ids[0, -2:], skip_special_tokens=True).strip()


def test_uploaded_image_answers_as_the_same_run_sample(play, run):
    ref = _test_yes(play)[0]
    sample = next(s for s in play.samples("features/test-yes") if s["id"] == ref["id"])
    from_run = play.answer(ref, top_k=3)
    with open(_image_path(run, ref["store"], ref["id"]), "rb") as handle:
        upload = play.answer(handle.read(), sample["prompt"], top_k=3)
    assert upload["image"]["kind"] == "upload" and from_run["image"]["kind"] == "sample"
    assert {k: upload[k] for k in ("answer", "top_k", "concepts")} == {k: from_run[k] for k in ("answer", "top_k", "concepts")}


def test_concept_activations_equal_transform_of_the_extracted_state(play, organism, run):
    from xlvlm.concepts.dictionary import ConceptDictionary

    dictionary = ConceptDictionary.load(run / "concepts" / "dictionary")
    ref = _test_yes(play)[1]
    got = play.answer(ref, n_concepts=2)["concepts"]
    assert got["present"] and got["dictionary"] == "concepts/dictionary" and got["layer"] == str(LAYER)
    sample = next(s for s in xlvlm.FeatureStore(run / "features" / "test-yes").samples if s["id"] == ref["id"])
    extracted = xlvlm.extract(organism, [sample], layers=[LAYER], progress=False).features(LAYER)
    expected = dictionary.transform(extracted)[0]
    assert torch.allclose(torch.tensor(got["activations"]), expected, atol=1e-5)
    # The state itself, read independently: transformers' hidden states (block LAYER's output),
    # at the last prompt token.
    inputs = _direct_inputs(organism, Image.open(sample["image"]).convert("RGB"), sample["prompt"])
    with torch.no_grad():
        state = organism.model(**inputs, output_hidden_states=True).hidden_states[LAYER + 1][0, -1]
    assert torch.allclose(torch.tensor(got["activations"]), dictionary.transform(state[None])[0], atol=1e-4)
    top = got["top"]
    assert [t["concept"] for t in top] == expected.argsort(descending=True)[:2].tolist()
    assert all(isinstance(t["words"], list) and t["words"] for t in top)


# ---- uploads -----------------------------------------------------------------------------------
def _png_header(width, height):
    """A PNG that claims width x height pixels and holds no pixel data (a few dozen bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _png(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("data, needle", [
    (b"not an image at all", "corrupt or unreadable image"),
    (b"", "empty file"),
    (_png_header(20000, 20000), "image too large"),     # a decompression bomb's header
    (_png(70, 70), "image too large"),                 # over this playground's pixel limit
    (_png(8, 8) + b"\0" * 5000, "file too large"),     # over this playground's byte limit
    ("a string", "image: give an uploaded file's bytes"),
])
def test_bad_uploads_are_refused_in_one_line(run, organism, data, needle):
    play = Playground(run, organism, max_upload_bytes=4096, max_image_pixels=64 * 64)
    try:
        with pytest.raises(XlvlmError, match=needle) as info:
            play.answer(data, "what shape is it?")
        assert "\n" not in str(info.value)
    finally:
        play.close()


def test_upload_limits_default_to_the_package_limits(play):
    from xlvlm.data import images

    assert play.info()["limits"]["image_pixels"] == images.MAX_IMAGE_PIXELS
    assert play.info()["limits"]["upload_bytes"] == images.MAX_UPLOAD_BYTES


def test_a_non_image_format_is_refused_even_when_pillow_reads_it(play):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(XlvlmError, match="upload a PNG, JPEG"):
        play.answer(buffer.getvalue(), "what shape is it?")


# ---- concurrency ---------------------------------------------------------------------------------
def test_concurrent_calls_run_one_at_a_time_on_the_worker(play, organism):
    refs = _test_yes(play)[:2]
    expected = [play.steer(ref, vector="steer/yes-no.safetensors", alpha=a, layer=LAYER)
                for ref, a in zip(refs, (0.0, 3.0))]
    active, seen, lock = [0], {"max": 0, "threads": set()}, threading.Lock()

    def enter(module, args, kwargs):
        with lock:
            active[0] += 1
            seen["max"] = max(seen["max"], active[0])
            seen["threads"].add(threading.current_thread().name)

    def leave(module, args, kwargs, output):
        with lock:
            active[0] -= 1

    handles = [organism.model.register_forward_pre_hook(enter, with_kwargs=True),
               organism.model.register_forward_hook(leave, with_kwargs=True)]
    results, start = [None, None], threading.Barrier(2)

    def call(i):
        start.wait()
        results[i] = play.steer(refs[i], vector="steer/yes-no.safetensors", alpha=(0.0, 3.0)[i], layer=LAYER)

    try:
        threads = [threading.Thread(target=call, args=(i,), name=f"request-{i}") for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for handle in handles:
            handle.remove()
    assert results == expected
    assert [r["steered"]["answer"] for r in results] == ["yes", "no"]
    assert seen["max"] == 1 and all(name.startswith(WORKER_NAME) for name in seen["threads"])
    assert play.pending == 0


# ---- untrusted run folder and arguments ------------------------------------------------------------
def test_resolve_under_refuses_ways_out(tmp_path):
    root = tmp_path / "run"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link-out").symlink_to(tmp_path / "secret.txt")
    (root / "link-in").symlink_to(root / "inside")
    assert resolve_under(root, "inside") == (root / "inside").resolve()
    assert resolve_under(root, "link-in") == (root / "inside").resolve()
    assert resolve_under(root, str(root / "inside"), allow_absolute=True) == (root / "inside").resolve()
    for name, needle in (("../secret.txt", "'..'"), ("inside/../../secret.txt", "'..'"),
                         (str(tmp_path / "secret.txt"), "absolute"), ("link-out", "outside the run folder"),
                         ("a\x00b", "NUL"), ("", "empty")):
        with pytest.raises(XlvlmError, match=needle):
            resolve_under(root, name)
    with pytest.raises(XlvlmError, match="outside the run folder"):
        resolve_under(root, str(tmp_path / "secret.txt"), allow_absolute=True)


def test_names_outside_the_run_are_refused(play):
    image = _test_yes(play)[0]
    for call, needle in (
        (lambda: play.samples("../features/yes"), "'..'"),
        (lambda: play.samples("/etc"), "absolute"),
        (lambda: play.samples("images"), "not a feature store of this run"),
        (lambda: play.steer(image, vector="../yes-no.safetensors", alpha=1), "'..'"),
        (lambda: play.steer(image, vector="features/yes/shard-00000.safetensors", alpha=1), "not a steering vector"),
        (lambda: play.answer({"store": "features/yes", "id": "no-such-id"}), "has no sample"),
    ):
        with pytest.raises(XlvlmError, match=needle):
            call()


def test_image_paths_named_by_the_run_must_stay_inside(play, run):
    inside = _image_path(run, "features/test-yes", _test_yes(play)[0]["id"])
    assert play.image_path(inside) == play.sample_image_path(_test_yes(play)[0]["store"], _test_yes(play)[0]["id"]).resolve()
    for value, needle in (("images/../../x.png", "'..'"), ("/etc/hostname", "outside the run folder"),
                          ("<PIL.Image 8x8 RGB sha256:00>", "in-memory"), (None, "in-memory")):
        with pytest.raises(XlvlmError, match=needle):
            play.image_path(value)


def test_run_files_pointing_outside_are_refused(run, organism, tmp_path):
    """A copy of the run where a store's shard is a link out of it and a sample's image lies
    outside: the store is refused, the image too unless its folder is an image root."""
    hostile = tmp_path / "hostile"
    shutil.copytree(run, hostile, symlinks=True)
    outside = tmp_path / "outside"
    shutil.copytree(hostile / "features" / "yes", outside)
    shard = hostile / "features" / "yes" / "shard-00000.safetensors"
    shard.unlink()
    shard.symlink_to(outside / "shard-00000.safetensors")
    # The test-yes store names its images inside the original run: outside this copy.
    with Playground(hostile, organism) as play:
        with pytest.raises(XlvlmError, match="links outside the run folder"):
            play.samples("features/yes")
        assert next(s for s in play.stores() if s["name"] == "features/yes")["error"]
        ref = _test_yes(play)[0]
        assert not play.samples("features/test-yes")[0]["image_ok"]
        with pytest.raises(XlvlmError, match="outside the run folder and the image roots"):
            play.answer(ref)
    with Playground(hostile, organism, image_roots=[run / "images"]) as play:
        assert play.answer(_test_yes(play)[0])["answer"] == "yes"


def test_files_that_are_not_vectors_are_not_listed(run, organism, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "steer" / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    (copy / "steer" / "broken.safetensors").write_bytes(b"not safetensors")
    from xlvlm.steer import Condition

    Condition("0", torch.ones(128) / math.sqrt(128), 0.0).save(copy / "steer" / "condition.safetensors")
    with Playground(copy, organism) as play:
        assert [v["name"] for v in play.vectors()] == ["steer/yes-no.safetensors"]
        for name in ("steer/garbage.safetensors", "steer/broken.safetensors", "steer/condition.safetensors"):
            with pytest.raises(XlvlmError):
                play.steer(_test_yes(play)[0], vector=name, alpha=1)


@pytest.mark.parametrize("kwargs, needle", [
    ({"alpha": float("nan")}, "alpha must be a finite number"),
    ({"alpha": "strong"}, "alpha must be a number"),
    ({"alpha": -2e6}, "alpha must be a finite number within"),
    ({"top_k": 0}, "top_k must be an integer"),
    ({"max_new_tokens": 10_000}, "max_new_tokens must be an integer"),
    ({"layer": 0}, "has no layer 0"),
    ({"vector": "no-such.safetensors"}, "not a steering vector file of this run"),
    ({"vector": "computed:0123456789abcdef"}, "no longer kept"),
    ({"positions": "sideways"}, "unknown positions"),
    ({"prompt": "  "}, "prompt: give a non-empty"),
])
def test_bad_steer_arguments_are_one_line_errors(play, kwargs, needle):
    args = {"vector": "steer/yes-no.safetensors", "alpha": 1.0, **kwargs}
    with pytest.raises(XlvlmError, match=needle) as info:
        play.steer(_test_yes(play)[0], **args)
    assert "\n" not in str(info.value)


def test_a_closed_playground_refuses_calls(run, organism):
    play = Playground(run, organism)
    play.close()
    with pytest.raises(XlvlmError, match="closed"):
        play.answer(_test_yes(play)[0])
    assert play.pending == 0


@pytest.mark.parametrize("settings, concepts, needle", [
    ({"layer": 99, "store": "features/qa"}, 7, "layer 99 out of range"),
    ({"layer": 2, "store": "/etc"}, [], "outside the run folder"),
    ({"layer": 2}, "words", "empty"),
    (None, None, "no concepts result.json"),
])
def test_a_hostile_concepts_result_leaves_the_dictionary_unusable(run, organism, tmp_path, settings, concepts, needle):
    import json

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    result = {"stage": "concepts", "settings": settings, "concepts": concepts}
    (copy / "concepts" / "result.json").write_text(json.dumps(result) if settings else "{not json")
    with Playground(copy, organism, image_roots=[run]) as play:  # the copy's stores name the run's images
        (listed,) = play.dictionaries()
        assert not listed["usable"] and needle in listed["problem"]
        answer = play.answer(_test_yes(play)[0])
        assert answer["answer"] == "yes" and answer["concepts"] is None
        with pytest.raises(XlvlmError, match="cannot read concepts for new inputs"):
            play.answer(_test_yes(play)[0], dictionary="concepts/dictionary")


@pytest.mark.parametrize("generate", [False, True])
def test_concepts_of_a_response_selector_read_the_models_own_answer(run, organism, tmp_path, generate):
    """A dictionary learnt at the answer's tokens (generated-mean): the playground reads the state
    of the model's answer, teacher forced as the store was, or generated when the store was."""
    from xlvlm.concepts.dictionary import ConceptDictionary
    from xlvlm.concepts.workflow import run_concepts

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "concepts")
    questions = xlvlm.FeatureStore(run / "features" / "qa").samples
    store = xlvlm.extract(organism, questions, layers=[LAYER], select="generated-mean", generate=generate,
                          max_new_tokens=2, out=copy / "features" / "answers", progress=False)
    run_concepts(store, LAYER, copy / "answer-concepts", method="snmf", n_concepts=3, vlm=organism,
                 text_similarity=False, heatmaps=0, top_k_samples=3, progress=False)
    with Playground(copy, organism, image_roots=[run]) as play:
        assert play.dictionaries()[0]["selector"] == "generated-mean" and play.dictionaries()[0]["usable"]
        ref = _test_yes(play)[0]
        got = play.answer(ref)
    sample = next(s for s in xlvlm.FeatureStore(run / "features" / "test-yes").samples if s["id"] == ref["id"])
    sample = {k: sample[k] for k in ("id", "image", "prompt")}
    if not generate:
        sample["answer"] = got["answer"]  # what the model answered, teacher forced
    state = xlvlm.extract(organism, [sample], layers=[LAYER], select="generated-mean", generate=generate,
                          max_new_tokens=2, progress=False).features(LAYER)
    expected = ConceptDictionary.load(copy / "answer-concepts" / "dictionary").transform(state)[0]
    assert got["concepts"]["present"] and got["answer"] == "yes"
    assert torch.allclose(torch.tensor(got["concepts"]["activations"]), expected, atol=1e-5)


def test_a_pretrained_sae_grounded_by_concepts_is_read_by_the_playground(run, organism, tmp_path):
    """An SAE in SAELens's format, grounded by run_concepts(dictionary=...): the playground's
    concepts of an answer are the SAE's selected features' codes of that answer's state."""
    from xlvlm.concepts import ConceptDictionary, TopKSAE, save_sae
    from xlvlm.concepts.workflow import run_concepts

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "concepts")
    qa = xlvlm.FeatureStore(copy / "features" / "qa")
    sae = TopKSAE(n_concepts=16, k_active=2, steps=200).fit(qa.features(LAYER, present_only=True))
    folder = save_sae(sae, tmp_path / "sae", hook_name=f"blocks.{LAYER}.hook_resid_post")
    run_concepts(qa, None, copy / "sae-concepts", dictionary=folder, n_concepts=3, vlm=organism,
                 text_similarity=False, heatmaps=0, top_k_samples=3, progress=False)
    with Playground(copy, organism, image_roots=[run]) as play:
        listed = play.dictionaries()[0]
        assert listed["method"] == "sae" and listed["usable"]
        ref = _test_yes(play)[0]
        got = play.answer(ref)
    sample = next(s for s in xlvlm.FeatureStore(run / "features" / "test-yes").samples if s["id"] == ref["id"])
    state = xlvlm.extract(organism, [sample], layers=[LAYER], progress=False).features(LAYER)
    expected = ConceptDictionary.load(copy / "sae-concepts" / "dictionary").transform(state)[0]
    assert torch.allclose(torch.tensor(got["concepts"]["activations"]), expected, atol=1e-5)


def test_every_steering_file_is_offered_and_played_by_its_kind(run, organism, tmp_path):
    """Fixed, calibrated, learned and per-sample files are listed with their kind and calibrated
    alpha; each steers as the kind's own loader + predict would; a per-sample file steers only its
    own samples; the model shows by the name it was given; a store's full reference answer shows."""
    from xlvlm.steer import PerSampleSteering
    from xlvlm.steer.learned import LearnedSteering
    from xlvlm.steer.run import predict

    from tests.serve.stage_run import CAL_ALPHA, add_stages

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    add_stages(copy, organism.hidden_size)
    test_yes = xlvlm.FeatureStore(run / "features" / "test-yes").samples
    ids = [s["id"] for s in test_yes[:2]]
    PerSampleSteering({str(LAYER): torch.randn(2, organism.hidden_size) * 2}, ids).save(copy / "p2s" / "per-sample.safetensors")
    xlvlm.FeatureStore.from_tensors({"1": torch.zeros(1, 4)}, [dict(test_yes[0], id="c0", answer="a",
                                                                   reference="a red circle")], path=copy / "captions-store")
    with Playground(copy, organism, image_roots=[run], model_name="organism:original") as play:
        assert play.info()["model"] == "organism:original"
        kinds = {v["name"]: (v["steering"], v["alpha"], v["fits"]) for v in play.vectors()}
        assert kinds == {"steer/yes-no.safetensors": ("fixed", None, True),
                         "calibration/calibrated.safetensors": ("fixed", CAL_ALPHA, True),
                         "learned/learned.safetensors": ("learned", CAL_ALPHA, True),
                         "p2s/per-sample.safetensors": ("per-sample", None, True)}
        assert next(v for v in play.vectors() if v["steering"] == "per-sample")["ids"] == ids
        assert play.samples("captions-store")[0]["reference"] == "a red circle"
        assert play.samples("features/test-yes")[0]["reference"] == test_yes[0]["answer"]
        for name, load in (("learned/learned.safetensors", LearnedSteering.load),
                           ("p2s/per-sample.safetensors", PerSampleSteering.load)):
            got = play.steer(_ref("features/test-yes", ids[0]), vector=name, alpha=CAL_ALPHA, top_k=3)
            sample = dict(test_yes[0], id=ids[0])
            (own,) = predict(organism, [sample], load(copy / name), alpha=CAL_ALPHA, max_new_tokens=8, top_k=3,
                             progress=False)
            assert got["steered"] == {"answer": own["prediction"], "top_k": own["top_k"]}
        with pytest.raises(XlvlmError, match="per-sample steering holds vectors for its own 2 samples only"):
            play.steer(_ref("features/test-yes", test_yes[2]["id"]), vector="p2s/per-sample.safetensors", alpha=1.0)
