"""The benchmark's OpenAI-compatible server: ``tests/oai_server.py`` in its own process, plus a control API.

Run by ``bench_engine.py`` as a child process (``python bench/_server.py``), so the server's CPU work never competes
for the client's GIL. It prints one line, ``URL http://127.0.0.1:PORT/v1``, then serves until its stdin closes or
it is terminated. Besides ``/v1/chat/completions`` it answers:

- ``GET /bench/stats`` — chat requests served since the last reset, prompt/completion tokens it reported (its own
  word-ish token count, the ``usage`` every client reads), the most requests it held at once, the first and last
  arrival times, its process CPU seconds, and requests per user-agent family;
- ``GET /bench/timeline`` — per chat request, its arrival time and a digest of its last message;
- ``POST /bench/reset`` — forget the requests and the emulated prefix cache;
- ``POST /bench/config`` — ``{"latency": seconds}``.

Replies are judge-like for every client the bench drives: rubrickit's per-criterion ``{"rationale", "verdict"}``,
its per-response object keyed by criterion id, and autorubric's ``{"criterion_status", "explanation"}``; the
verdict is a deterministic function of the last message, as in :func:`oai_server.default_reply`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from oai_server import OAIServer, Reply, _json, default_reply  # noqa: E402


def _met(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    content = last.get("content", "")
    if not isinstance(content, str):
        content = json.dumps(content)
    return int(hashlib.sha256(content.encode()).hexdigest()[:8], 16) % 3 != 0


def _digest(body: Any) -> str:
    """A short digest of a request's last message (the bench matches client and server records by it)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    return hashlib.sha256(str(last.get("content", "")).encode()).hexdigest()[:16]


def _schema_properties(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


def bench_reply(body: dict[str, Any]) -> Reply:
    """A judge-like answer in the reply format the request asks for."""
    props = _schema_properties(body)
    met = _met(body)
    if "criterion_status" in props or (not props and "criterion_status" in json.dumps(body.get("messages"))):
        return Reply(json.dumps({"criterion_status": "MET" if met else "UNMET",
                                 "explanation": f"The response is judged {'met' if met else 'unmet'} by the "
                                                "scripted server."}))
    if "winner" in props:  # rubrickit pairwise, per criterion or direct: a winner that depends on the content
        winner = ("A", "B", "tie")[int(_digest(body), 16) % 3]
        return Reply(json.dumps({"rationale": "The scripted server compares the two responses.", "winner": winner}))
    if props and not set(props) <= {"rationale", "verdict"}:  # rubrickit per_response: one entry per criterion
        reply = {}
        for index, cid in enumerate(props):
            verdict = "met" if (met + index) % 3 else "unmet"
            reply[cid] = {"rationale": f"The response is judged {verdict} by the scripted server.",
                          "verdict": verdict}
        return Reply(json.dumps(reply))
    return default_reply(body)


class BenchServer(OAIServer):
    """:class:`OAIServer` with token accounting and the ``/bench/*`` control routes."""

    def __init__(self, **options: Any):
        super().__init__(bench_reply, **options)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.by_agent: dict[str, int] = {}

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        data = super()._completion(body, reply)
        with self._lock:
            self.prompt_tokens += data["usage"]["prompt_tokens"]
            self.completion_tokens += data["usage"]["completion_tokens"]
        return data

    def _stats(self) -> dict[str, Any]:
        with self._lock:
            chats = [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]
            return {
                "chat_requests": len(chats),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "max_in_flight": self.max_in_flight,
                "first": min((r.received_at for r in chats), default=None),
                "last": max((r.received_at for r in chats), default=None),
                "cpu_s": time.process_time(),
                "by_agent": dict(self.by_agent),
                "latency": self.latency,
            }

    def _reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.prompt_tokens = self.completion_tokens = 0
            self.max_in_flight = self.in_flight
            self.by_agent.clear()
            self._blocks.clear()

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> bytes | None:
        route = path.split("?")[0].rstrip("/")
        if route == "/bench/stats":
            return _json(200, self._stats())
        if route == "/bench/timeline":  # arrival time and a digest of the last message, per chat request
            with self._lock:
                chats = [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]
            return _json(200, [[r.received_at, _digest(r.body)] for r in chats])
        if route == "/bench/reset":
            self._reset()
            return _json(200, {"ok": True})
        if route == "/bench/config":
            config = json.loads(raw or b"{}")
            if "latency" in config:
                self.latency = float(config["latency"])
            return _json(200, {"ok": True, "latency": self.latency})
        agent = headers.get("user-agent", "?").split("/")[0]
        with self._lock:
            self.by_agent[agent] = self.by_agent.get(agent, 0) + 1
        return await super()._dispatch(method, path, headers, raw)


def main() -> int:
    server = BenchServer(latency=0.0).start()
    print(f"URL {server.url}", flush=True)
    done = threading.Event()

    def watch_stdin() -> None:  # the parent closing our stdin (or dying) ends the server
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
