"""Large multimodal models for captions, ranking and DISCOVER.

Both backends expose the same small interface used by ranking.ask and tasks.resolve_task:

    name: str
    chat(messages, image=None) -> str     # messages: [{"role": "user"|"assistant", "content": str}]
    discover(task) -> list[str]           # about 100 labels for a task (strict parse, one retry)

`OpenAICompatible` talks to any /v1/chat/completions endpoint that accepts
images as data URLs (vLLM, Ollama, llama.cpp server, OpenAI) with urllib only.
`LocalVLM` runs a transformers image-text-to-text model (Qwen2-VL/Qwen2.5-VL,
SmolVLM/Idefics3, ...) by id or path.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import urllib.error
import urllib.request

from sdc.errors import UsageError

from . import ranking


class LMMError(RuntimeError):
    """The model or its endpoint failed (network, HTTP status, timeout, bad envelope)."""


def _image_data_url(image, max_side: int = 1024) -> str:
    im = image.convert("RGB")
    s = max_side / max(im.size)
    if s < 1:
        im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Discover:
    def discover(self, task: str) -> list[str]:
        return ranking.ask(self, ranking.DISCOVER_PROMPT.format(task=task), ranking.parse_labels)


class OpenAICompatible(_Discover):
    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_tokens: int = 1024):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise UsageError(f"LMM base URL must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = float(timeout)
        self.max_tokens = int(max_tokens)
        self._model = model
        self.name = f"openai({model})" if model else "openai"

    @property
    def model(self) -> str:
        if not self._model:
            # vLLM, llama.cpp and Ollama list what they serve; take the first
            d = self._request("GET", "/models")
            try:
                self._model = str(d["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise LMMError("no model given and the endpoint's /models lists none") from None
            self.name = f"openai({self._model})"
        return self._model

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read(8 << 20)
        except urllib.error.HTTPError as e:
            detail = e.read(300).decode("utf-8", "replace") if e.fp else ""
            raise LMMError(f"HTTP {e.code} from {self.base_url}{path}: {' '.join(detail.split())[:200]}") from None
        except (socket.timeout, TimeoutError):
            raise LMMError(f"no answer from {self.base_url} within {self.timeout:g} s") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise LMMError(f"no answer from {self.base_url} within {self.timeout:g} s") from None
            raise LMMError(f"cannot reach {self.base_url}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise LMMError(f"{self.base_url}{path} did not answer JSON") from None

    def chat(self, messages: list[dict], image=None) -> str:
        msgs = []
        for k, m in enumerate(messages):
            if k == 0 and image is not None and m["role"] == "user":
                content = [{"type": "image_url", "image_url": {"url": _image_data_url(image)}},
                           {"type": "text", "text": m["content"]}]
            else:
                content = m["content"]
            msgs.append({"role": m["role"], "content": content})
        body = {"model": self.model, "messages": msgs, "temperature": 0, "max_tokens": self.max_tokens}
        d = self._request("POST", "/chat/completions", body)
        try:
            content = d["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LMMError("the endpoint's answer has no choices[0].message.content") from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise LMMError("the endpoint's message content is not text")
        return content


class LocalVLM(_Discover):
    """A transformers image-text-to-text model, loaded once, run greedily on CPU (or cfg['device'])."""

    def __init__(self, model: str, cfg: dict):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from .config import hf_kwargs, hf_model_kwargs

        kw = hf_kwargs(cfg)
        self.processor = AutoProcessor.from_pretrained(model, **kw)
        self.model = AutoModelForImageTextToText.from_pretrained(model, **hf_model_kwargs(cfg))
        self.model.to(cfg.get("device") or "cpu").eval()
        self.device = cfg.get("device") or "cpu"
        self.max_new_tokens = int(cfg.get("vlm_max_new_tokens", 768))
        # generation stops after this many seconds (a cut answer fails to parse: retry, then heuristic)
        self.timeout = float(cfg.get("lmm_timeout", 60.0))
        self.torch = torch
        short = model.rstrip("/").split("/")[-1]
        self.name = f"vlm({short})"

    def chat(self, messages: list[dict], image=None) -> str:
        conv = []
        for k, m in enumerate(messages):
            parts = []
            if k == 0 and image is not None:
                parts.append({"type": "image"})
            parts.append({"type": "text", "text": m["content"]})
            conv.append({"role": m["role"], "content": parts})
        prompt = self.processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        kw = {"text": [prompt], "return_tensors": "pt"}
        if image is not None:
            kw["images"] = [image.convert("RGB")]
        inputs = self.processor(**kw).to(self.device)
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      max_time=self.timeout)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.decode(new, skip_special_tokens=True)
