"""LMM ranking through an OpenAI-compatible endpoint: a real HTTP server on 127.0.0.1 started here,
answering well, badly (malformed JSON, wrong ids, HTTP errors) and slowly."""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from sdc.analysis import analyze
from sdc.analysis import ranking
from sdc.analysis.lmm import OpenAICompatible

from conftest import DARKNET, SHARED

pytestmark = pytest.mark.usefixtures("isolated_analysis")

IMG = SHARED / "data" / "coco128" / "train2017" / "000000000113.jpg"
DARKNET = {**DARKNET, "masks": "box"}

GOOD_CAPTION = json.dumps({"short": "Three people at a birthday table.",
                           "long": "Three people sit around a table with a cake, smiling at the camera.",
                           "objects": ["person", "cake", "table"]})


def ranking_answer(prompt: str, wrong_ids: bool = False) -> str:
    ids = [int(m) for m in re.findall(r"^(\d+): ", prompt, flags=re.M)]
    if wrong_ids:
        ids = [i + 100 for i in ids]
    return json.dumps({"objects": [{"id": i, "level": "L1" if k == 0 else "L2", "reason": f"object {i} matters"}
                                   for k, i in enumerate(ids)]})


class Server:
    """mode: good | malformed | malformed-once | wrong-ids | slow | http-500 | fenced"""

    def __init__(self, mode: str, delay: float = 0.0):
        self.mode, self.delay = mode, delay
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the slow case)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "tiny-vl", "object": "model"}]})
                else:
                    self._send(404, {"error": "no"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append(dict(self.headers))
                if outer.mode == "slow":
                    time.sleep(outer.delay)
                if outer.mode == "http-500":
                    return self._send(500, {"error": {"message": "model crashed"}})
                self._send(200, {"choices": [{"message": {"role": "assistant",
                                                          "content": outer.answer(body)}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict) -> str:
        first = body["messages"][0]["content"]
        prompt = first if isinstance(first, str) else next(p["text"] for p in first if p["type"] == "text")
        n_same = sum(1 for r in self.requests if r["messages"][0] == body["messages"][0])
        if "List about 100" in prompt:
            return json.dumps({"labels": ["forklift", "pallet", "worker", "safety helmet", "shelf"]})
        if self.mode == "malformed" or (self.mode == "malformed-once" and n_same == 1):
            return '{"short": "oops", "objects": [1, 2,'  # cut off
        if "Describe this image" in prompt:
            return GOOD_CAPTION
        if self.mode == "fenced":
            return "Here you go:\n```json\n" + ranking_answer(prompt) + "\n```"
        return ranking_answer(prompt, wrong_ids=self.mode == "wrong-ids")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run(server: Server, **cfg):
    config = {**DARKNET, "lmm_base_url": server.url, "lmm_model": "tiny-vl", **cfg}
    return analyze(Image.open(IMG), analyzer="darknet", config=config)


def test_good_answers_give_captions_and_levels():
    with Server("good") as s:
        a = run(s, lmm_api_key="sk-test")
    assert a.analyzer == "darknet(yolo-fastest-1.1.weights)/box/openai(tiny-vl)"
    assert a.caption_short == "Three people at a birthday table." and "cake" in a.caption_long
    assert a.warnings == []
    assert [o.level for o in a.objects] == ["L1"] + ["L2"] * (len(a.objects) - 1)
    assert all(o.reason == f"object {o.id} matters" for o in a.objects)
    assert len(s.requests) == 2  # caption + ranking
    first = s.requests[0]["messages"][0]["content"]
    image_part = next(p for p in first if p["type"] == "image_url")["image_url"]["url"]
    assert image_part.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image_part.split(",", 1)[1])[:2] == b"\xff\xd8"
    assert s.requests[0]["model"] == "tiny-vl" and s.requests[0]["temperature"] == 0
    assert s.headers[0]["Authorization"] == "Bearer sk-test"
    rank_prompt = s.requests[1]["messages"][0]["content"][1]["text"]
    assert "Short caption: Three people at a birthday table." in rank_prompt
    assert re.search(r"^0: person \[\d+, \d+, \d+, \d+\]$", rank_prompt, flags=re.M)
    assert a.metadata()["caption_short"] == a.caption_short


def test_malformed_json_twice_falls_back_to_heuristic_with_warning():
    with Server("malformed") as s:
        a = run(s)
    assert a.analyzer.endswith("/heuristic")
    assert a.caption_short == ""
    assert any("unusable caption answer twice" in w for w in a.warnings)
    assert any("unusable ranking answer twice" in w for w in a.warnings)
    assert all(o.reason.startswith("heuristic:") for o in a.objects)
    assert len(s.requests) == 4  # each prompt asked twice
    retry = s.requests[1]["messages"]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert "could not be used" in retry[2]["content"]


def test_one_malformed_answer_is_retried_and_then_used():
    with Server("malformed-once") as s:
        a = run(s)
    assert a.analyzer.endswith("/openai(tiny-vl)") and a.warnings == []
    assert a.caption_short.startswith("Three people")
    assert len(s.requests) == 4


def test_wrong_ids_fall_back_with_warning():
    with Server("wrong-ids") as s:
        a = run(s)
    assert a.analyzer.endswith("/heuristic")
    assert a.caption_short.startswith("Three people")  # the caption was fine
    assert any("is not one of the listed ids" in w for w in a.warnings)


def test_fenced_json_is_accepted():
    with Server("fenced") as s:
        a = run(s)
    assert a.analyzer.endswith("/openai(tiny-vl)")


def test_slow_endpoint_times_out_and_the_encode_goes_on():
    with Server("slow", delay=6.0) as s:
        t = time.perf_counter()
        a = run(s, lmm_timeout=0.4)
        dt = time.perf_counter() - t
    assert dt < 5.0  # one timed-out request, then no more LMM calls (any answer would take 6 s)
    assert a.analyzer.endswith("/heuristic") and a.objects
    assert any("within 0.4 s" in w for w in a.warnings)
    assert len(s.requests) == 1


def test_slow_endpoint_during_task_discovery_is_asked_once():
    with Server("slow", delay=3.0) as s:
        a = analyze(
            Image.open(IMG), analyzer="darknet", task="safety inspection of scaffolding",
            config={**DARKNET, "lmm_base_url": s.url, "lmm_model": "tiny-vl", "lmm_timeout": 0.4})
    assert len(s.requests) == 1
    assert a.labels and a.analyzer.endswith("/heuristic")
    assert any("listing the task's labels" in w for w in a.warnings)


def test_http_error_falls_back():
    with Server("http-500") as s:
        a = run(s)
    assert a.analyzer.endswith("/heuristic")
    assert any("HTTP 500" in w and "model crashed" in w for w in a.warnings)


def test_unreachable_endpoint_falls_back():
    with Server("good") as s:
        url = s.url
    a = analyze(Image.open(IMG), analyzer="darknet", config={**DARKNET, "lmm_base_url": url, "lmm_timeout": 2})
    assert a.analyzer.endswith("/heuristic") and any("cannot reach" in w for w in a.warnings)


def test_model_name_from_models_listing():
    with Server("good") as s:
        lmm = OpenAICompatible(s.url, None, None, timeout=5)
        assert lmm.chat([{"role": "user", "content": "Describe this image"}]) == GOOD_CAPTION
        assert lmm.name == "openai(tiny-vl)"


def test_task_labels_discovered_once_and_cached(tmp_path):
    task = "inventory of a warehouse"
    with Server("good") as s:
        a = run(s)  # warm
        a = analyze(Image.open(IMG), analyzer="darknet", task=task,
                    config={**DARKNET, "lmm_base_url": s.url, "lmm_model": "tiny-vl"})
        n_discover = sum("List about 100" in json.dumps(r) for r in s.requests)
        b = analyze(Image.open(IMG), analyzer="darknet", task=task,
                    config={**DARKNET, "lmm_base_url": s.url, "lmm_model": "tiny-vl"})
        assert sum("List about 100" in json.dumps(r) for r in s.requests) == n_discover == 1
    assert a.labels == b.labels == ["forklift", "pallet", "worker", "safety helmet", "shelf"]
    assert list((tmp_path / "cache" / "sdc" / "tasks").glob("*.json"))
    # nothing of the task is in Yolo-Fastest's classes: all detections kept, ranked by the LMM
    assert a.objects and a.analyzer.endswith("/openai(tiny-vl)")


def test_parse_ranking_is_strict():
    ids = [0, 1]
    good = '{"objects": [{"id": 0, "level": "L1", "reason": "x"}, {"id": 1, "level": "l3"}]}'
    assert ranking.parse_ranking(good, ids) == {0: ("L1", "x"), 1: ("L3", "")}
    for bad, msg in [
        ('{"objects": [{"id": 0, "level": "L1"}]}', "missing"),
        ('{"objects": [{"id": 0, "level": "L1"}, {"id": 0, "level": "L2"}, {"id": 1, "level": "L2"}]}', "twice"),
        ('{"objects": [{"id": 0, "level": "L4"}, {"id": 1, "level": "L2"}]}', "L4"),
        ('{"objects": [{"id": 0, "level": "L1"}, {"id": 7, "level": "L2"}]}', "not one of"),
        ('[1, 2]', "not a JSON object"), ('', "empty"), ('L1 L2', "not JSON"),
    ]:
        with pytest.raises(ranking.ParseError, match=msg):
            ranking.parse_ranking(bad, ids)


def test_auto_without_models_still_ranks_with_a_configured_endpoint(monkeypatch):
    img = Image.open(IMG)
    with Server("good") as s:
        monkeypatch.setenv("SDC_LMM_BASE_URL", s.url)
        monkeypatch.setenv("SDC_LMM_MODEL", "tiny-vl")
        auto = analyze(img, config={"masks": "box"})
        offline = analyze(img, analyzer="offline", config={"masks": "box"})
        offline_named_ranker = analyze(img, analyzer="offline", config={"masks": "box", "ranker": "openai"})
    assert auto.analyzer.startswith("offline(") and auto.analyzer.endswith("/openai(tiny-vl)")
    assert offline.analyzer.endswith("/heuristic") and offline.caption_short == ""
    assert offline_named_ranker.analyzer.endswith("/openai(tiny-vl)")


def test_cli_lmm_options_reach_the_endpoint(tmp_path):
    """`--lmm-url/--lmm-model` on analyze and encode: captions come from that endpoint, stored in the file."""
    from click.testing import CliRunner

    from sdc.bitstream import read_sdc
    from sdc.cli import cli

    with Server("good") as s:
        r = CliRunner().invoke(cli, ["analyze", str(IMG), "--analyzer", "offline",
                                     "--lmm-url", s.url, "--lmm-model", "tiny-vl"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["caption_short"] == "Three people at a birthday table."
        out = tmp_path / "x.sdc"
        r = CliRunner().invoke(cli, ["encode", str(IMG), "-o", str(out), "--analyzer", "offline", "--quiet",
                                     "--lmm-url", s.url, "--lmm-model", "tiny-vl"])
        assert r.exit_code == 0, r.output
    assert read_sdc(out.read_bytes()).metadata["caption_short"] == "Three people at a birthday table."
    assert {req["model"] for req in s.requests} == {"tiny-vl"}
