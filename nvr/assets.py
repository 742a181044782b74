"""Two folders: the model store (`NVR_MODELS`) and the asset folder / local mirror (`NVR_ASSETS`).

The model store is where `nvr models pull` puts a user's models and where the daemon looks for catalogue
models. The asset folder, laid out like `../shared/assets` (models/scrfd, hef, images, ...), stands in for
the download servers on machines without internet (`pull` copies from it) and is where the tests read their
real assets from; nothing is ever written into it.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "NVR_ASSETS"
MODELS_ENV = "NVR_MODELS"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """The asset folder: `$NVR_ASSETS`, else `../shared/assets` beside the project checkout."""
    configured = os.environ.get(ASSETS_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (_PROJECT_ROOT.parent / "shared" / "assets").resolve()


def systemd_state_directory() -> Path | None:
    """systemd's `$STATE_DIRECTORY` (StateDirectory=, /var/lib/nvr) when running as the service: the first
    folder if it lists several (separated by ':'). Run by hand as the service user (`sudo -u nvr nvr ...`),
    that user's home when it lies in /var/lib: install.sh makes the state folder the service user's home,
    so the command sees the daemon's files (face library, model store). None otherwise."""
    value = os.environ.get("STATE_DIRECTORY")
    if value:
        return Path(value.split(":")[0])
    try:
        home = Path.home()
    except RuntimeError:  # no home directory known for this user
        return None
    return home if home.parent == Path("/var/lib") else None


def models_dir() -> Path:
    """The model store: `$NVR_MODELS`; under systemd `$STATE_DIRECTORY/models` (/var/lib/nvr/models);
    else `$XDG_DATA_HOME/nvr/models` (default ~/.local/share/nvr/models)."""
    configured = os.environ.get(MODELS_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    systemd_state = systemd_state_directory()
    if systemd_state is not None:
        return systemd_state / "models"
    data_home = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data_home) if os.path.isabs(data_home) else Path.home() / ".local" / "share"
    return base / "nvr" / "models"
