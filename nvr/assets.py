"""Where local copies of models and test assets are found: one setting, `NVR_ASSETS`.

On a user's machine the models come from `nvr models pull`; `NVR_ASSETS` names a folder laid out like
`../shared/assets` (models/scrfd, hef, images, ...) that stands in for the download servers where there is
no internet, and that the tests read their real assets from.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "NVR_ASSETS"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    """The asset folder: `$NVR_ASSETS`, else `../shared/assets` beside the project checkout."""
    configured = os.environ.get(ASSETS_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (_PROJECT_ROOT.parent / "shared" / "assets").resolve()
