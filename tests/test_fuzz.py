"""A short run of the fuzzers in fuzz/ (the long runs: fuzz/README.md).

Hypothesis picks the strategy and the random seed of each input; the inputs are
real .sdc files (encoded at start with the loaded codec) mutated, truncated,
spliced, or re-wrapped with valid CRCs around damaged payloads so that they
reach the region-map and metadata parsers and the entropy decoders. Only
sdc.errors.SdcError may come out, each input in well under a second.
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import sdcfuzz  # noqa: E402

NAMES = sorted(sdcfuzz.STRATEGIES)


@pytest.fixture(scope="module")
def seeds():
    return sdcfuzz.Seeds(sdcfuzz.make_seeds())


def run_input(target: str, seeds, strategy: str, seed: int) -> str:
    data = sdcfuzz.STRATEGIES[strategy](random.Random(seed), seeds)
    t0 = time.thread_time()
    outcome = sdcfuzz.TARGETS[target](data)  # raises on anything but an SdcError
    assert time.thread_time() - t0 < 1.0, (strategy, seed)
    return outcome


def test_seeds_are_real_files_that_decode(seeds, one_thread):
    assert len(seeds.files) >= 5
    for name, data in seeds.files.items():
        assert sdcfuzz.reader_target(data) == "read ok", name
        assert sdcfuzz.frontend_target(data) == "symbols ok", name
        assert sdcfuzz.decoder_target(data) == "pixels ok", name


def test_every_strategy_reaches_its_stage(seeds, one_thread):
    """Deterministic: each strategy a few times; the re-wrapped ones pass the container checks."""
    reached = {}
    for name in NAMES:
        outcomes = [run_input("frontend", seeds, name, k) for k in range(6)]
        reached[name] = sum(not o.startswith("open:") for o in outcomes)
        for k in range(20):
            run_input("reader", seeds, name, k)
    for name in ("payload", "swap", "transplant", "regionmap", "resize"):
        assert reached[name] >= 3, reached  # these get to the entropy decoders


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(strategy=st.sampled_from(NAMES), seed=st.integers(0, 2**64))
def test_fuzz_reader(seeds, strategy, seed):
    run_input("reader", seeds, strategy, seed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(strategy=st.sampled_from(NAMES), seed=st.integers(0, 2**64))
def test_fuzz_frontend(seeds, one_thread, strategy, seed):
    run_input("frontend", seeds, strategy, seed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(strategy=st.sampled_from(NAMES), seed=st.integers(0, 2**64))
def test_fuzz_whole_decoder(seeds, one_thread, strategy, seed):
    run_input("decoder", seeds, strategy, seed)


def test_fuzz_driver_writes_results(tmp_path, one_thread):
    import run as fuzz_run

    threads = torch.get_num_threads()
    out = tmp_path / "fuzz.json"
    try:
        assert fuzz_run.main(["reader", "--inputs", "300", "--out", str(out), "--warmup", "100"]) == 0
        assert fuzz_run.main(["frontend", "--inputs", "40", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    doc = json.loads(out.read_text())
    assert doc["total_inputs"] == 340 and doc["total_failures"] == 0
    for key in ("reader", "frontend"):
        r = doc["runs"][key]
        assert r["complete"] and r["failures"] == 0 and r["inputs_over_time_limit_cpu"] == 0
        assert 0 < r["max_cpu_seconds_per_input"] < 1 and r["peak_rss_mb"] > 0
        assert sum(r["outcomes"].values()) == r["inputs"]
