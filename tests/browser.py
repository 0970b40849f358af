"""Render a page in Debian's headless Chromium (PLATFORM.md flags); skip with a reason when it is absent."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

SKIP_REASON = "chromium not found: install Debian's chromium (scripts/install_chromium.sh)"


def screenshot(page: Path, tmp_path: Path, *, width: int = 1280, height: int = 2000) -> np.ndarray:
    """RGB pixels of ``page`` rendered at ``width`` x ``height``; the test is skipped without chromium."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        print(SKIP_REASON)
        pytest.skip(SKIP_REASON)
    shot = tmp_path / "page.png"
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    proc = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
         f"--screenshot={shot}", f"--window-size={width},{height}", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (height, width)
    return pixels[..., :3]


def assert_synthetic_report_rendered(rgb: np.ndarray) -> None:
    """Not a blank page, and the red SYNTHETIC DATA banner across the top."""
    assert float(rgb.std()) > 0.05
    top = rgb[5:30].reshape(-1, 3).mean(axis=0)
    assert top[0] > 0.5 and top[1] < 0.35 and top[2] < 0.35, top
