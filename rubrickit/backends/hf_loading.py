"""The ``hf`` backend's model and tokenizer: finding the weights on disk, loading them, and encoding prompts.

:func:`_resolve_model` takes a folder, a ``.gguf`` file or a hub id already in the local Hugging Face cache (nothing
is ever downloaded). :class:`_HFModel`, the base of :class:`~rubrickit.backends.hf.HFBackend`, loads the model and
tokenizer on first use (device and dtype picked, the forward arguments of this transformers version noted, the stop
tokens and the JSON-schema grammars set up) and turns a request into prompt token ids through the chat template (a
plain transcript for a base model without one). :mod:`rubrickit.backends.embedded` uses :func:`_import_torch`,
:func:`_quiet_progress` and :func:`_version_at_least` for its one-time GGUF conversion.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BackendSpecError, MissingDependencyError
from ._grammar import SchemaGrammars
from .base import CompletionRequest, FatalBackendError

__all__: list[str] = []

INSTALL_HINT = "pip install 'rubrickit[local]'"
_DTYPES = (None, "float32", "bfloat16", "float16", "auto")


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as error:
        raise MissingDependencyError(
            f"the hf backend needs torch and transformers ({error.name or error} is not installed): {INSTALL_HINT}"
        ) from error
    return torch, transformers


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    # For base models without a chat template: a transcript that ends where the assistant speaks.
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    # Some templates (Gemma's) reject a system role: prepend it to the first user turn instead.
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def _resolve_model(model_or_path: str, gguf_file: str | None) -> tuple[str, str | None]:
    """A folder, a ``.gguf`` file (split into folder + file), or a hub id present in the local cache."""
    if not str(model_or_path).strip():
        raise BackendSpecError("hf: needs a model folder, a .gguf file or a cached hub id, e.g. 'hf:/models/qwen'")
    path = Path(model_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file and not (path / gguf_file).is_file() and not Path(gguf_file).is_file():
            raise BackendSpecError(f"hf:{model_or_path}: no GGUF file {gguf_file!r} in that folder")
        return str(path), gguf_file
    looks_like_path = str(model_or_path).startswith(("/", ".", "~")) or path.suffix == ".gguf"
    if not looks_like_path:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError as error:
            raise MissingDependencyError(f"the hf backend needs huggingface_hub: {INSTALL_HINT}") from error
        if isinstance(try_to_load_from_cache(str(model_or_path), gguf_file or "config.json"), str):
            return str(model_or_path), gguf_file
    raise BackendSpecError(
        f"hf:{model_or_path}: no such local model folder, .gguf file or cached hub model. rubrickit never downloads "
        f"weights: pass a folder path, or fetch it first (huggingface-cli download {model_or_path})"
    )


class _HFModel:
    """Loading and prompt encoding of :class:`~rubrickit.backends.hf.HFBackend` (its ``__init__`` sets the options;
    :meth:`_ensure_loaded` sets the rest, under ``_lock``)."""

    spec: str
    model_path: str
    gguf_file: str | None
    device_name: str
    dtype_name: str | None
    _lock: threading.Lock
    _load_error: BaseException | None
    _model: Any
    _tokenizer: Any
    _torch: Any
    _device: Any
    _keep_arg: bool
    """Whether the model's forward takes ``logits_to_keep``."""
    _cache_arg: str
    """The name of the forward's KV-cache argument (and output field): ``cache`` or ``past_key_values``."""
    _eos_ids: list[int]
    _grammars: SchemaGrammars

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        if self._load_error is not None:
            raise self._load_error
        torch, transformers = _import_torch()
        device = self._pick_device(torch)
        common: dict[str, Any] = {"local_files_only": True}
        if self.gguf_file:
            common["gguf_file"] = self.gguf_file
        dtype_key = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
        model_kwargs: dict[str, Any] = {dtype_key: self._pick_dtype(torch, device)}
        if device.type != "cpu":
            model_kwargs["device_map"] = str(device)  # straight onto the accelerator, not through host memory
        try:
            with _quiet_progress(transformers):
                tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_path, **common)
                model = transformers.AutoModelForCausalLM.from_pretrained(self.model_path, **common, **model_kwargs)
            model = model.to(device).eval()
        except (OSError, ValueError) as error:
            self._load_error = FatalBackendError(f"{self.spec}: could not load the model from {self.model_path}: "
                                                 f"{error}")
            raise self._load_error from error
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._torch, self._device = torch, device
        parameters = inspect.signature(model.forward).parameters
        self._keep_arg = "logits_to_keep" in parameters
        # transformers 5.x renames the KV-cache argument (and output field) to ``cache``; passing the old name
        # raises a FutureWarning there and stops working in 5.40. 4.x only knows ``past_key_values``.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._eos_ids = self._stop_ids(model, tokenizer)
        self._grammars = SchemaGrammars(tokenizer, self._eos_ids)
        self._model, self._tokenizer = model, tokenizer

    def _pick_device(self, torch: Any) -> Any:
        name = self.device_name
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        return torch.device(name)

    def _pick_dtype(self, torch: Any, device: Any) -> Any:
        if self.dtype_name == "auto":
            return "auto"
        if self.dtype_name:
            return getattr(torch, self.dtype_name)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    @staticmethod
    def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
        ids = model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else [] if ids is None else [ids]
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return list(dict.fromkeys(ids))

    def _render(self, request: CompletionRequest) -> str:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if not getattr(self._tokenizer, "chat_template", None):
            return _plain_prompt(messages)
        try:
            return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception:  # jinja raises its own TemplateError for a system role the template refuses
            if not any(m["role"] == "system" for m in messages):
                raise
            return self._tokenizer.apply_chat_template(_merge_system(messages), add_generation_prompt=True,
                                                       tokenize=False)

    def _encode_text(self, text: str) -> list[int]:
        # Chat templates already carry the special tokens (BOS and the like).
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, request: CompletionRequest) -> list[int]:
        ids = self._encode_text(self._render(request))
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit and len(ids) + 1 > limit:
            raise FatalBackendError(f"{self.spec}: the prompt has {len(ids)} tokens; the model takes at most {limit}")
        if not ids:
            raise FatalBackendError(f"{self.spec}: the prompt is empty")
        return ids


def _version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= wanted


@contextlib.contextmanager
def _quiet_progress(transformers: Any) -> Iterator[None]:
    """Hide transformers' per-load progress bars (they are noise on every run of a CLI)."""
    logging = transformers.utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
