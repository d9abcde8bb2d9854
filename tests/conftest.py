"""Shared fixtures: tiny models and the real membrane data when it is beside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ISBI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012-membrane"


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # Tests use tiny models: extra threads cost more in synchronisation than they gain.
    torch.set_num_threads(1)


@pytest.fixture
def isbi_dir() -> Path:
    """The ISBI 2012 membrane slices, or a skip when ../shared is absent."""
    if not (ISBI / "images").is_dir():
        pytest.skip(f"real data not found at {ISBI}")
    return ISBI
