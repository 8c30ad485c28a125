"""Judge spec strings → backends: parsing, lazy built-ins, entry points, "Did you mean", missing SDKs."""

from __future__ import annotations

import asyncio
import importlib.metadata
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rubrickit.backends import (
    FakeBackend,
    OpenAIBackend,
    available_backends,
    get_backend,
    parse_spec,
    register_backend,
    registry,
)
from rubrickit.errors import BackendSpecError, MissingDependencyError, RubrickitError, UnknownBackendError

GROUP = "rubrickit.backends"


@pytest.fixture(autouse=True)
def _clean_registrations() -> Iterator[None]:
    before = dict(registry._registered)
    yield
    registry._registered.clear()
    registry._registered.update(before)


def entry_points_returning(*points: importlib.metadata.EntryPoint) -> Any:
    def fake(**selection: Any) -> list[importlib.metadata.EntryPoint]:
        assert selection == {"group": GROUP}
        return list(points)

    return fake


# -- parse_spec ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("openai:gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
    ("litellm:anthropic/claude-sonnet-4-5", ("litellm", "anthropic/claude-sonnet-4-5")),
    ("hf:Qwen/Qwen2.5-0.5B-Instruct", ("hf", "Qwen/Qwen2.5-0.5B-Instruct")),
    ("hf:C:/models/judge", ("hf", "C:/models/judge")),  # split on the first colon only
    ("openai:ft:gpt-4o-mini:acme::abc123", ("openai", "ft:gpt-4o-mini:acme::abc123")),
    ("  OpenAI : gpt-4o ", ("openai", "gpt-4o")),
    ("embedded", ("embedded", "")),
    ("embedded:", ("embedded", "")),
    ("embedded:SmolLM2-135M", ("embedded", "SmolLM2-135M")),
])
def test_parse_spec_splits_on_the_first_colon(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("", "is empty"),
    ("   ", "is empty"),
    ("openai:", "names no model after the colon; write 'openai:MODEL'"),
    (":gpt-4o", "no backend name before the colon"),
    ("openai", "names no model; write 'openai:MODEL'"),
    ("gpt-4o", "no backend prefix; write BACKEND:MODEL, e.g. 'openai:gpt-4o'"),
    ("anthropic", "e.g. 'litellm:anthropic/MODEL'"),
])
def test_malformed_specs_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(BackendSpecError) as caught:
        parse_spec(spec)
    assert message in str(caught.value)
    assert not isinstance(caught.value, KeyError)


def test_spec_must_be_a_string() -> None:
    with pytest.raises(BackendSpecError, match="must be a string"):
        parse_spec(42)  # type: ignore[arg-type]


# -- get_backend -----------------------------------------------------------------------------------------------


def test_builtins_are_available() -> None:
    assert {"openai", "litellm", "hf", "embedded", "vllm", "fake"} <= set(available_backends())
    assert available_backends() == sorted(available_backends())


def test_fake_backend_from_spec() -> None:
    backend = get_backend("fake:scripted-judge")
    assert isinstance(backend, FakeBackend) and backend.spec == "fake:scripted-judge"


def test_backend_object_is_returned_as_is() -> None:
    backend = FakeBackend()
    assert get_backend(backend) is backend


def test_object_that_is_not_a_backend_is_rejected() -> None:
    with pytest.raises(BackendSpecError, match="spec string or a backend object"):
        get_backend(object())  # type: ignore[arg-type]


def test_none_means_the_embedded_backend() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def embedded(model: str, **options: Any) -> FakeBackend:
        seen.append((model, options))
        return FakeBackend(spec="embedded")

    register_backend("embedded", embedded)
    assert get_backend(None).spec == "embedded"
    assert get_backend("embedded", device="cpu").spec == "embedded"
    assert seen == [("", {}), ("", {"device": "cpu"})]


def test_options_and_base_url_reach_the_factory() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def factory(model: str, **options: Any) -> FakeBackend:
        calls.append((model, options))
        return FakeBackend(spec=f"mine:{model}")

    register_backend("mine", factory)
    get_backend("mine:m1", temperature_floor=0.1)
    get_backend("mine:m2", base_url="http://127.0.0.1:1/v1")
    assert calls == [("m1", {"temperature_floor": 0.1}), ("m2", {"base_url": "http://127.0.0.1:1/v1"})]


def test_base_url_is_refused_by_in_process_backends() -> None:
    with pytest.raises(BackendSpecError, match="takes no base URL"):
        get_backend("fake:x", base_url="http://127.0.0.1:8000/v1")

    def no_url(model: str) -> FakeBackend:
        return FakeBackend()

    register_backend("local", no_url)
    with pytest.raises(BackendSpecError, match="takes no base URL"):
        get_backend("local:x", base_url="http://127.0.0.1:8000/v1")


def test_factory_that_returns_no_backend_is_reported() -> None:
    register_backend("broken", lambda model, **options: "not a backend")
    with pytest.raises(BackendSpecError, match="lacks the Backend protocol"):
        get_backend("broken:x")


def test_openai_spec_builds_the_openai_backend() -> None:
    backend = get_backend("openai:gpt-4.1-mini", api_key="sk-registry-test-0000000000")
    assert isinstance(backend, OpenAIBackend) and backend.spec == "openai:gpt-4.1-mini"
    local = get_backend("openai:Qwen/Qwen3-8B", base_url="http://127.0.0.1:8000/v1")
    assert local.spec == "openai:Qwen/Qwen3-8B" and local.base_url == "http://127.0.0.1:8000/v1"
    for b in (backend, local):
        asyncio.run(b.aclose())


def test_register_backend_validates_its_arguments() -> None:
    with pytest.raises(BackendSpecError):
        register_backend("has:colon", FakeBackend)
    with pytest.raises(TypeError):
        register_backend("notcallable", 3)  # type: ignore[arg-type]


def test_registered_backend_overrides_a_builtin() -> None:
    register_backend("openai", lambda model, **options: FakeBackend(spec=f"openai:{model}"))
    assert isinstance(get_backend("openai:gpt-4o"), FakeBackend)
    registry.unregister_backend("openai")
    with pytest.raises(RubrickitError):
        get_backend("openai:gpt-4o")  # the real one again: no key in the cleaned environment


# -- unknown names ---------------------------------------------------------------------------------------------


def test_typo_gets_did_you_mean_and_the_list() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        get_backend("openia:gpt-4o")
    message = str(caught.value)
    assert "unknown judge backend 'openia'" in message
    assert "Did you mean 'openai'?" in message
    assert "Available: embedded, fake, hf, litellm, openai, vllm" in message
    assert "'rubrickit.backends' entry-point group" in message
    assert isinstance(caught.value, BackendSpecError) and not isinstance(caught.value, KeyError)


def test_provider_name_points_to_litellm() -> None:
    with pytest.raises(UnknownBackendError, match=r"Try 'litellm:anthropic/MODEL'"):
        get_backend("anthropic:claude-sonnet-4-5")
    with pytest.raises(UnknownBackendError, match=r"base URL 'http://127.0.0.1:11434/v1'.* in --base-url "):
        get_backend("ollama:llama3.2")


# -- missing SDKs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "module", "options"), [
    ("openai:gpt-4o", "aiohttp", {}),  # the lean transport (the default) needs aiohttp, not the SDK
    ("openai:gpt-4o", "openai", {"transport": "sdk"}),
    ("litellm:openai/gpt-4o", "litellm", {}),
])
def test_missing_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch, spec: str, module: str,
                                                options: dict[str, str]) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    with pytest.raises(MissingDependencyError) as caught:
        get_backend(spec, api_key="sk-registry-test-0000000000", **options)
    assert "pip install 'rubrickit[api]'" in str(caught.value)
    assert f"'{module}'" in str(caught.value)
    assert isinstance(caught.value, ImportError)


def test_backend_module_whose_dependency_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "needs_sdk_backend.py").write_text("import not_installed_sdk_xyz\n\ndef factory(model): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._BUILTINS, "hf", "needs_sdk_backend:factory")
    with pytest.raises(MissingDependencyError) as caught:
        get_backend("hf:Qwen/Qwen2.5-0.5B-Instruct")
    assert "'not_installed_sdk_xyz'" in str(caught.value) and "pip install 'rubrickit[local]'" in str(caught.value)


def test_builtin_module_that_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._BUILTINS, "vllm", "rubrickit.backends.no_such_module:factory")
    with pytest.raises(MissingDependencyError, match="not part of this installation"):
        get_backend("vllm:Qwen/Qwen3-8B")


def test_importing_the_backends_package_imports_no_sdk() -> None:
    code = textwrap.dedent("""
        import sys
        import rubrickit.backends
        from rubrickit.backends import available_backends
        available_backends()
        heavy = [m for m in ("openai", "litellm", "torch", "transformers", "vllm", "aiohttp") if m in sys.modules]
        print(",".join(heavy))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


# -- entry points ----------------------------------------------------------------------------------------------


def test_entry_point_backend_is_listed_and_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    point = importlib.metadata.EntryPoint(name="acme", value="rubrickit.backends.fake:fake_backend_from_spec",
                                          group=GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_returning(point))
    assert "acme" in available_backends()
    backend = get_backend("acme:judge-1")
    assert isinstance(backend, FakeBackend) and backend.spec == "fake:judge-1"


def test_entry_points_load_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_package_xyz.backend:factory", group=GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_returning(broken))
    assert "broken" in available_backends()  # listing does not import it
    assert isinstance(get_backend("fake:x"), FakeBackend)  # nor does using another backend
    with pytest.raises(MissingDependencyError, match="entry point 'no_such_package_xyz.backend:factory'"):
        get_backend("broken:x")


def test_entry_point_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    hijack = importlib.metadata.EntryPoint(name="fake", value="no_such_package_xyz:factory", group=GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_returning(hijack))
    assert isinstance(get_backend("fake:x"), FakeBackend)


def test_entry_point_typo_gets_did_you_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    point = importlib.metadata.EntryPoint(name="bedrockish", value="x:y", group=GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_returning(point))
    with pytest.raises(UnknownBackendError, match="Did you mean 'bedrockish'"):
        get_backend("bedrockis:m")


def test_broken_entry_point_metadata_does_not_break_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(**selection: Any) -> Any:
        raise RuntimeError("corrupt METADATA")

    monkeypatch.setattr(importlib.metadata, "entry_points", explode)
    assert "openai" in available_backends()
    assert isinstance(get_backend("fake:x"), FakeBackend)
