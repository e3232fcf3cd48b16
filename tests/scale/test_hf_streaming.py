"""Streaming hf: data: SIGKILL in the middle of an extraction, then a resume to the identical store."""

import os
import signal
import sys
import time

import pytest

import xlvlm
from tests.data.hfdata import hf_cache, pope_rows, write_parquet  # noqa: F401
from tests.scale.conftest import assert_same_store
from tests.scale.test_faults import OPTIONS, _forked_extract, _shards_listed
from xlvlm.data import load_samples

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks the test process")


def test_sigkill_mid_stream_then_resume_to_the_identical_store(vlm_of, tmp_path):
    vlm = vlm_of("llava")
    parquet = write_parquet(tmp_path / "pope.parquet", pope_rows(12))
    spec = f"hf:{parquet}"
    reference = xlvlm.extract(vlm, load_samples(spec, preset="pope"), out=tmp_path / "reference", progress=False,
                              **OPTIONS)
    out = tmp_path / "store"
    child = _forked_extract(vlm, load_samples(spec, preset="pope", streaming=True), out)
    deadline = time.monotonic() + 60
    while child.is_alive() and _shards_listed(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    partial = xlvlm.FeatureStore(out, allow_partial=True)
    assert 2 <= len(partial) < 12 and not partial.complete  # killed part-way: the resume has work to do
    resumed = xlvlm.extract(vlm, load_samples(spec, preset="pope", streaming=True), out=out, progress=False, **OPTIONS)
    assert resumed.complete
    assert_same_store(resumed, reference)  # streaming or not, killed or not: one store
    resumed.verify()
