"""The browser check: headless Chromium reads a document over HTTP with the JavaScript reader.

A document written by this package (columnar manifest, blosc columns, zstd
chunks, an inline and a missing chunk, a source path with a space, an accent
and a percent sign) is served by a local server with Range support; the page
(js/browser/) draws one grey cell per value. The values it shows and its
screenshot must match what this package's reader gives. `make test` installs
Debian's chromium; without it the test is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from png_pixels import read_png

import zarr_manifest_store as zms
from conformance.build import source_array

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CELL = 10

pytestmark = pytest.mark.xdist_group("js")


@pytest.fixture
def document(tmp_path: Path) -> Path:
    values = np.random.default_rng(7).normal(size=(12, 20)).astype("float32")
    made = source_array(
        tmp_path / "doc" / "data" / "relevé 1%.bin",
        values,
        chunks=(5, 6),
        missing={(1, 1)},
        inline={(2, 3)},
        fill_value=-1.5,
        compressors=zarr.codecs.ZstdCodec(level=3),
    )
    zms.write_manifest(zms.ManifestGroup(arrays={"t": made}), tmp_path / "doc", encoding="columnar")
    return tmp_path / "doc"


def python_values(document: Path) -> np.ndarray:
    store = zms.ManifestStore.open(str(document))
    return zarr.open_group(store, mode="r")["t"][...]


def test_chromium_shows_the_values_the_python_reader_gives(document, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"NO BROWSER CHECK: {CHROMIUM} is missing (apt-get install chromium; make test does)"
        )
    if shutil.which("node") is None or not (ROOT / "js/dist/browser/check.js").exists():
        pytest.fail("the JavaScript reader is not built: run `make js`")
    expected = python_values(document)
    assert (expected[5:10, 6:12] == -1.5).all()  # the missing chunk
    shot = tmp_path / "page.png"
    done = subprocess.run(
        ["node", "js/dist/browser/check.js", str(document), "t", str(shot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout)
    assert shown["shape"] == list(expected.shape)
    np.testing.assert_array_equal(np.array(shown["values"], dtype="float32"), expected)

    pixels = read_png(shot.read_bytes())
    assert pixels.shape[:2] == (expected.shape[0] * CELL, expected.shape[1] * CELL)
    centres = pixels[CELL // 2 :: CELL, CELL // 2 :: CELL, :3].astype(int)
    lo, hi = float(expected.min()), float(expected.max())
    grey = np.round(255 * (expected.astype("float64") - lo) / (hi - lo))
    assert np.abs(centres - grey[..., None]).max() <= 1
