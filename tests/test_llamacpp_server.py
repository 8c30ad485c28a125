"""``openai:`` against the real llama.cpp server (llama-cpp-python's ``python -m llama_cpp.server``) on the shipped
SmolLM2 GGUF: the CPU user's server.

llama-cpp-python 0.3.36 refuses ``response_format: {"type": "json_schema", …}`` with HTTP 500 and takes
``{"type": "json_object", "schema": …}``; before negotiation every LLM criterion ended as an ``error`` verdict after
five retries (and the circuit breaker then stopped the run). Here both modes must end with no error verdict, the
refused form sent only by the first wave of concurrent calls, and ``json_object`` + schema remembered.

The server lives in a venv of its own (its pins differ from the lock; it compiles llama.cpp on install):
``make llamacpp-server`` builds ``.venv-llamacpp``, ``make test-llamacpp`` runs this file. The interpreter is
``$RUBRICKIT_LLAMACPP_PYTHON``, else ``.venv-llamacpp/bin/python`` of this checkout, else this one when it has
``llama_cpp``; the tests are skipped, saying so, when none is found. About 30 s per mode on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rubrickit.backends.openai_backend import CAPABILITIES_FILENAME, forget_negotiated
from rubrickit.cli import app

REPO = Path(__file__).resolve().parents[1]
RUBRIC = REPO / "rubrics" / "support-reply.yaml"
DATA = REPO / "examples" / "support-tickets.jsonl"
LLM_CRITERIA = 7  # of support-reply's 9: two are programmatic checks
pytestmark = pytest.mark.slow


def llamacpp_python() -> tuple[str | None, str]:
    """The interpreter that has ``llama_cpp`` (and why none, when none)."""
    override = os.environ.get("RUBRICKIT_LLAMACPP_PYTHON")
    if override:
        path = Path(override)
        path = path if path.is_absolute() else REPO / path
        if path.is_file():
            return str(path), ""
        return None, f"RUBRICKIT_LLAMACPP_PYTHON={override} does not exist"
    local = REPO / ".venv-llamacpp" / "bin" / "python"
    if local.is_file():
        return str(local), ""
    if importlib.util.find_spec("llama_cpp") is not None:
        return sys.executable, ""
    return None, ("llama-cpp-python's server is not installed: run 'make llamacpp-server' (builds .venv-llamacpp, "
                  "compiling llama.cpp: a few minutes) or set RUBRICKIT_LLAMACPP_PYTHON to a python that has "
                  "'llama-cpp-python[server]' (pip install 'rubrickit[llamacpp]')")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A llama.cpp server on the embedded SmolLM2 GGUF: (base URL, its log file)."""
    python, reason = llamacpp_python()
    if python is None:
        pytest.skip(reason)
    probe = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{python} cannot import llama_cpp.server: {probe.stderr.strip().splitlines()[-1:]}")
    try:
        from rubrickit.backends.embedded import locate_embedded_gguf

        gguf = locate_embedded_gguf()
    except Exception as error:  # noqa: BLE001 - the reason is the skip message
        pytest.skip(f"the shipped SmolLM2 GGUF is not installed: {error}")
    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                    "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the llama.cpp server exited ({process.returncode}): {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not answer /v1/models in 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _statuses(log: Path, start: int) -> Counter[int]:
    """HTTP statuses of the chat-completion requests the server logged after byte ``start``."""
    text = log.read_bytes()[start:].decode("utf-8", "replace")
    marker = '"POST /v1/chat/completions HTTP/1.1" '
    return Counter(int(line.split(marker)[1][:3]) for line in text.splitlines() if marker in line)


@pytest.mark.parametrize(("mode", "judgments"), [("per_criterion", 3 * LLM_CRITERIA), ("per_response", 3)])
def test_score_on_llamacpp_has_no_error_verdicts(llamacpp: tuple[str, Path], mode: str, judgments: int,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, log = llamacpp
    forget_negotiated()  # each mode negotiates from scratch, as a fresh process would
    monkeypatch.setenv("RUBRICKIT_CACHE_DIR", str(tmp_path / "cache"))  # where capabilities.json goes
    out = tmp_path / "scores.jsonl"
    start = log.stat().st_size
    began = time.monotonic()
    result = CliRunner(env={"COLUMNS": "160"}).invoke(app, [
        "score", "-r", str(RUBRIC), "-d", str(DATA), "--judge", "openai:smollm2", "--base-url", url,
        "--mode", mode, "--cache-dir", str(tmp_path / "cache"), "-o", str(out)])
    elapsed = time.monotonic() - began
    output = result.output
    assert result.exit_code == 0, output  # --max-error-rate 0: any error verdict would exit 3
    verdicts = [v for line in out.read_text().splitlines() for v in json.loads(line)["verdicts"]]
    assert len(verdicts) == 3 * 9 and not [v for v in verdicts if v["verdict"] == "error"]
    assert "refused response_format json_schema (HTTP 500" in output
    assert "using response_format json_object+schema" in output
    entry, = json.loads((tmp_path / "cache" / CAPABILITIES_FILENAME).read_text())["endpoints"].values()
    assert entry["structured"] == "json_object" and entry["refused"] == ["json_schema"]
    statuses = _statuses(log, start)
    # Every judgment answered once; the refused form went out only with the first wave of concurrent calls
    # (at most one per judgment), and nothing was retried.
    assert statuses[200] == judgments and 1 <= statuses[500] <= min(judgments, 16) and set(statuses) == {200, 500}
    print(f"{mode}: {judgments} judgments, 0 errors, {statuses[500]} refused first-wave requests, {elapsed:.1f} s")
