"""Shared fixtures. Real assets come from `nvr.assets.assets_dir()`; a missing one fails the test, never skips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nvr.assets import ASSETS_ENV, assets_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def asset_path(relative: str) -> Path:
    """Path of a required test asset; fails loudly (never skips) when it is missing."""
    path = assets_dir() / relative
    if not path.exists():
        pytest.fail(
            f"required test asset missing: {path} (set {ASSETS_ENV} or put ../shared/assets beside the project)",
            pytrace=False,
        )
    return path


@pytest.fixture
def asset() -> Callable[[str], Path]:
    return asset_path
