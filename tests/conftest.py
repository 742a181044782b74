"""Shared fixtures. Real assets come from `nvr.assets.assets_dir()`; a missing one fails, never skips."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nvr.assets import ASSETS_ENV, MODELS_ENV, assets_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The Mosquitto broker and subscriber fixtures (tests/mosquitto.py), for every MQTT test.
pytest_plugins = ["mosquitto"]
# Helper modules that test modules import or load as plugins: let pytest rewrite their asserts either way.
pytest.register_assert_rewrite("hailo_support", "capture_util")


def asset_path(relative: str) -> Path:
    """Path of a required test asset; fails loudly (never skips) when it is missing."""
    path = assets_dir() / relative
    if not path.exists():
        pytest.fail(
            f"required test asset missing: {path} "
            f"(set {ASSETS_ENV} or put ../shared/assets beside the project)",
            pytrace=False,
        )
    return path


@pytest.fixture
def asset() -> Callable[[str], Path]:
    return asset_path


@pytest.fixture(autouse=True, scope="session")
def _session_model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or fills the developer's own model store (~/.local/share/nvr/models): NVR_MODELS
    points at a scratch folder unless a test gives its own (the `model_store` fixture)."""
    previous = os.environ.get(MODELS_ENV)
    os.environ[MODELS_ENV] = str(tmp_path_factory.mktemp("session-model-store"))
    yield
    if previous is None:
        os.environ.pop(MODELS_ENV, None)
    else:
        os.environ[MODELS_ENV] = previous


@pytest.fixture
def model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """An empty model store for this test (NVR_MODELS, inherited by subprocesses); call it with catalogue
    ids to pull them into it from the local mirror, the way `nvr models pull` does. Returns the store."""
    from nvr.models.catalogue import find
    from nvr.models.store import pull

    store = tmp_path / "model-store"
    monkeypatch.setenv(MODELS_ENV, str(store))

    def pull_from_mirror(*model_ids: str) -> Path:
        for model_id in model_ids:
            entry = find(model_id)
            assert entry is not None, f"{model_id} is not in the catalogue"
            asset_path(entry.path)  # the mirror must have it: fail loudly, never download in a test
            pull(entry)
        return store

    return pull_from_mirror
