"""`xlvlm serve` in a real browser: headless Debian chromium driven by Playwright.

The server runs in this process (uvicorn on a free port of 127.0.0.1) over a small run folder
built here from the model organism the way the demo builds its own, with a playground on the
organism. Playwright drives the system browser (``executable_path``; it never downloads one);
.ci/run installs chromium. Every request the page makes is recorded.

With XLVLM_SCREENSHOTS=DIR set, the test saves the screenshots of docs/serve.md into DIR
(``XLVLM_SCREENSHOTS=docs/img pytest tests/serve/test_browser.py``).
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

import xlvlm  # noqa: E402
from PIL import Image  # noqa: E402

from tests.hardening.test_report_hostile import SCRIPT, SECRET, _crafted_run  # noqa: E402
from tests.serve.stage_run import CAL_ALPHA, add_stages  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
SCREENSHOTS = os.environ.get("XLVLM_SCREENSHOTS")
SMALL = {"concept_questions": 40, "caption_images": 24, "steer_train": 20, "steer_test": 12, "alphas": [2.0],
         "methods": ["mean-diff"], "caption_alphas": [1.0], "text_similarity": False}


class Server:
    """The app served by uvicorn on a free port of 127.0.0.1, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def organism():
    return xlvlm.organism.load("original")


@pytest.fixture(scope="module")
def run(organism, tmp_path_factory):
    """A small demo run: concepts (with patch heatmaps), shift, and the yes -> no sweep with its
    stores, and the stages of the other tabs; a secret next to it and a link to it inside."""
    from xlvlm.apps import demo

    root = tmp_path_factory.mktemp("serve-run")
    run = root / "run"
    finetuned = xlvlm.organism.load("finetuned")
    middle = organism.num_layers // 2
    demo.stage_concepts(organism, run, run, SMALL, middle, False)
    demo.stage_shift(organism, finetuned, run, run, SMALL, organism.num_layers - 1, False)
    demo.stage_steer_yes_no(organism, run, run, SMALL, [middle], 0, False)
    add_stages(run, organism.hidden_size)  # learned steering, calibration, hallucination, tables: by their writers
    (root / "secret.txt").write_text(SECRET)
    (run / "leak.txt").symlink_to(root / "secret.txt")
    return run


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _open(browser, base):
    """A page on ``base`` that records every request it makes and every dialog it opens."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.requests, page.dialogs = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready=true]")
    return page


def _shot(page, name):
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name))


def _text(page, selector):
    return page.text_content(selector).strip()


def _wait_text(page, selector):
    page.wait_for_function("(s) => document.querySelector(s).textContent.trim() !== ''", arg=selector)
    return _text(page, selector)


def test_browse_play_steer_upload_and_refusals_in_chromium(run, organism, browser, tmp_path):
    from easy_vqa import get_test_image_paths

    from xlvlm.serve.app import create_app
    from xlvlm.serve.play import Playground

    image_root = Path(get_test_image_paths()[0]).parents[2]  # easy_vqa/data: the dataset the run's samples come from
    with Playground(run, organism, image_roots=[image_root]) as playground, Server(create_app(run, playground)) as server:
        page = _open(browser, server.base)

        # Browse: every concept thumbnail decodes, the search filters by word, figures load.
        thumbnails = page.locator("img.mas")
        assert thumbnails.count() >= 12
        # Every image of every tab (figures of hidden tabs too) has finished loading before widths are read:
        # on a busy machine the figures arrive after the thumbnails.
        page.wait_for_function("() => [...document.querySelectorAll('img.mas, figure img')].every(i => i.complete)")
        broken = page.eval_on_selector_all("img.mas, figure img",
                                           "images => images.filter(i => i.naturalWidth === 0).map(i => i.src)")
        assert broken == [], broken
        _shot(page, "serve-concepts.png")
        cards = page.locator(".concept:visible")
        total = cards.count()
        page.fill("input[type=search]", "circle")
        assert 0 < cards.count() <= total
        page.fill("input[type=search]", "")
        page.locator(".concept button").first.click()
        page.wait_for_selector(".histogram rect")
        assert page.locator(".concept").first.locator(".histogram rect").count() == 20
        page.click("button[data-tab=shift]")
        assert page.locator("#tab-shift table tr").count() > 1
        _shot(page, "serve-shift.png")
        page.click("button[data-tab=sweeps]")
        page.click("button[data-tab=predictions]")
        page.wait_for_selector("#prediction-table td")
        answers = "rows => rows.map(r => r.cells[2].textContent)"  # one lowercase word each
        before = page.eval_on_selector_all("#prediction-table tbody tr", answers)
        page.click("#prediction-table th:text-is('answer')")  # sortable
        after = page.eval_on_selector_all("#prediction-table tbody tr", answers)
        assert len(after) > 2 and after == sorted(before), (before, after)

        # Play: a yes-answered question; the yes -> no vector from the run's two stores; the
        # alpha slider moves the steered answer to "no" while the unsteered one stays "yes".
        page.click("button[data-tab=play]")
        page.select_option("#play-store", "features/steer-yes-paired")
        page.wait_for_function("() => document.getElementById('play-sample').dataset.store === 'features/steer-yes-paired'")
        assert page.input_value("#play-prompt") and page.locator("#play-sample option").count() > 0
        page.evaluate("""() => { window.busySeen = false; const busy = document.getElementById('busy');
            new MutationObserver(() => { window.busySeen ||= !busy.hidden; }).observe(busy, {attributes: true}); }""")
        page.click("#play-answer")
        assert _wait_text(page, "#answer-text") == "yes"
        assert page.evaluate("() => window.busySeen") and page.is_hidden("#busy")  # shown while the model worked
        assert page.locator("#answer-topk tr").count() == 6 and page.locator("#answer-concepts li").count() > 0
        page.select_option("#compute-source-store", "features/steer-yes-paired")
        page.select_option("#compute-target-store", "features/steer-no-paired")
        page.click("#compute-vector")
        page.wait_for_function("() => document.getElementById('steer-vector').value.startsWith('computed:')")
        page.select_option("#steer-layer", str(organism.num_layers // 2))
        page.fill("#steer-alpha", "0")
        assert (_wait_text(page, "#steer-unsteered"), _wait_text(page, "#steer-steered")) == ("yes", "yes")
        page.fill("#steer-alpha", "4")
        page.wait_for_function("() => document.getElementById('steer-steered').textContent === 'no'")
        assert _text(page, "#steer-unsteered") == "yes" and page.is_hidden("#busy")
        _shot(page, "serve-play.png")

        # Upload: the image comes back as a thumbnail and the model answers about it.
        upload = tmp_path / "upload.png"
        Image.new("RGB", (64, 64), "white").save(upload)
        page.set_input_files("#play-upload", str(upload))
        page.wait_for_function("() => { const i = document.getElementById('play-image'); "
                               "return i.src.includes('/api/upload/') && i.complete && i.naturalWidth === 64; }")
        page.fill("#play-prompt", "what color is the shape?")
        page.locator("#answer-text").evaluate("node => { node.textContent = ''; }")
        page.click("#play-answer")
        assert _wait_text(page, "#answer-text")

        # Refusals: a traversal and a link out of the run answer the error page.
        for path in ("/files/..%2fsecret.txt", "/files/leak.txt"):  # (chromium itself resolves /%2e%2e/)
            response = page.goto(server.base + path)
            assert response.status == 403 and "refused" in page.text_content("#error-message")
            assert SECRET not in page.content()

        assert page.requests and all(url.startswith(server.base + "/") for url in page.requests), page.requests
        assert not page.dialogs


STAGE_TABS = {"learned": 2, "hallucination": 1, "calibration": 2, "evaluation": 0}  # tab -> figures it shows


def test_stage_tabs_show_numbers_and_figures_and_a_learned_steering_plays(run, organism, browser):
    from easy_vqa import get_test_image_paths

    from xlvlm.serve.app import create_app
    from xlvlm.serve.play import Playground

    image_root = Path(get_test_image_paths()[0]).parents[2]
    with Playground(run, organism, image_roots=[image_root], model_name="organism:original") as playground, \
            Server(create_app(run, playground)) as server:
        page = _open(browser, server.base)
        for tab, n_figures in STAGE_TABS.items():
            page.click(f"button[data-tab={tab}]")
            section = f"#tab-{tab}"
            assert page.is_visible(section) and page.locator(f"{section} table tbody tr").count() > 0
            assert page.locator(f"{section} .stage-error").count() == 0
            page.wait_for_function("(s) => [...document.querySelectorAll(s + ' img')].every(i => i.complete)", arg=section)
            widths = page.eval_on_selector_all(f"{section} figure img", "images => images.map(i => i.naturalWidth)")
            assert len(widths) == n_figures and all(w > 0 for w in widths), (tab, widths)
            _shot(page, f"serve-{tab}.png")
        assert "Caption steering" in page.text_content("#tab-evaluation")

        # Play: the learned steering is offered with its kind, its calibrated alpha is the default, it plays.
        page.click("button[data-tab=play]")
        assert "organism:original" in page.text_content("#play-model")
        page.select_option("#play-store", "features/steer-yes-paired")
        page.wait_for_function("() => document.getElementById('play-sample').dataset.store === 'features/steer-yes-paired'")
        labels = page.eval_on_selector_all("#steer-vector option", "options => options.map(o => o.textContent)")
        assert any(label.startswith("learned: learned/learned.safetensors") for label in labels), labels
        page.select_option("#steer-vector", "learned/learned.safetensors")
        assert float(page.input_value("#steer-alpha")) == CAL_ALPHA and page.is_hidden("#steer-note")
        page.fill("#steer-alpha", "2")
        assert _wait_text(page, "#steer-steered") and _wait_text(page, "#steer-unsteered")
        assert page.is_hidden("#message") and page.is_hidden("#busy")
        assert all(url.startswith(server.base + "/") for url in page.requests), page.requests
        assert not page.dialogs


def test_a_crafted_run_stays_text_in_the_page(browser, tmp_path):
    """Markup in every field of a hostile run folder shows as text; nothing runs, nothing is fetched."""
    from xlvlm.serve.app import create_app

    with Server(create_app(_crafted_run(tmp_path))) as server:
        page = _open(browser, server.base)
        assert SCRIPT in page.text_content("#tab-concepts")
        page.click("button[data-tab=sweeps]")
        assert SCRIPT in page.text_content("#tab-sweeps")
        assert page.locator("#tab-concepts img, #tab-concepts script").count() == 0
        assert not page.dialogs
        assert all(url.startswith(server.base + "/") for url in page.requests), page.requests
