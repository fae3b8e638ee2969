"""Shared fixtures. Real datasets live outside the repository (research-only licences)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """``$PHYSEG_DATA`` or ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("PHYSEG_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture
def shared_data() -> Path:
    """Root of the shared datasets; skips the test cleanly when they are absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("shared datasets not found (set PHYSEG_DATA or place ../shared/data)")
    return root
