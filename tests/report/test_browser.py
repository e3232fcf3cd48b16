"""The report in a real browser: every figure decodes and the page requests nothing.

Needs Debian's chromium (.ci/run installs it); the page is checked by a script injected into a
copy of the report, which lists the images' decode state and every resource the page fetched
(performance API). Chromium's own background traffic is not the page's and is not counted.
"""

import json
import re
import shutil
import subprocess

import pytest

from tests.planted_run import concepts_and_shift_run
from xlvlm.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, alt: i.alt}));
  const resources = performance.getEntriesByType('resource').map(e => e.name);
  document.body.insertAdjacentHTML('beforeend', '<pre id=' + '"probe">' + JSON.stringify({images, resources}) + '</' + 'pre>');
});</script>"""


def _probe(page, tmp_path):
    """Load ``page`` in headless Chromium and report its images and requests. The probe is itself
    an inline script, which the report's Content-Security-Policy forbids: the copy drops the policy."""
    copy = tmp_path / "probe.html"
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    copy.write_text(page.replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-500:]
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_report_figures_load_and_nothing_is_requested(tmp_path, samples):
    run = concepts_and_shift_run(tmp_path, samples)
    assert main(["report", str(run)]) == 0
    result = _probe((run / "report.html").read_text(), tmp_path)
    assert len(result["images"]) >= 4 and all(image["ok"] for image in result["images"]), result["images"]
    assert result["resources"] == []


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_probe_sees_a_broken_image_and_a_request(tmp_path):
    """The probe itself can fail: a remote image is both a request and a figure that did not load."""
    page = '<html><body><img alt="remote" src="http://127.0.0.1:9/x.png"></body></html>'
    result = _probe(page, tmp_path)
    assert result["images"] == [{"ok": False, "alt": "remote"}]
    assert result["resources"] == ["http://127.0.0.1:9/x.png"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_crafted_run_folder_requests_nothing_in_a_browser(tmp_path):
    """Markup in every field of a hostile run folder stays text: no <img src=x> in it is fetched."""
    from tests.hardening.test_report_hostile import _crafted_run

    run = _crafted_run(tmp_path)
    assert main(["report", str(run)]) == 0
    result = _probe((run / "report.html").read_text(), tmp_path)
    assert result["images"] == [] and result["resources"] == []
