"""Test setup: no network beyond loopback, a clean environment per test, and the shared evaluation data."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (``RUBRICKIT_SHARED_DATA`` overrides)."""
    override = os.environ.get("RUBRICKIT_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder; the test is skipped with the reason when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared evaluation data not found at {path} (clone ../shared beside the repo or set "
                    "RUBRICKIT_SHARED_DATA)")
    return path


_real_connect = socket.socket.connect


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # unix sockets and the like
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise RuntimeError(f"test tried to reach {address!r}: tests may only use 127.0.0.1")
    return _real_connect(self, address)


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the whole run: tests never write to the user's ~/.cache, and the embedded model is
    converted at most once per run for the tests that use the default location."""
    return tmp_path_factory.mktemp("rubrickit-cache")


@pytest.fixture(autouse=True)
def _no_network_and_clean_env(monkeypatch: pytest.MonkeyPatch, _session_cache_dir: Path) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    for name in list(os.environ):
        if name.startswith("RUBRICKIT_") and name != "RUBRICKIT_SHARED_DATA" or name.endswith("_API_KEY"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RUBRICKIT_CACHE_DIR", str(_session_cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
