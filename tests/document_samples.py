"""A sample chunk-manifest hierarchy over generated sources, for the document's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

import zarr_manifest_store as zms
from conformance.build import source_array

ENCODINGS = ["json", "columnar"]
PROMPTLY = 30
"""Seconds a hostile document may take to be refused: a refusal is immediate, a hang is not."""


def t2m_data() -> np.ndarray:
    return np.random.default_rng(0).normal(280, 10, size=(12, 10)).astype("float32")


def sample_group(folder: Path, **options) -> tuple[zms.ManifestGroup, dict[str, np.ndarray]]:
    """A nested hierarchy over sources in ``folder``: compression, a missing and an inline chunk."""
    t2m = t2m_data()
    expected_t2m = t2m.copy()
    expected_t2m[8:, 5:] = -9999.0  # chunk (2, 1) is missing: the fill value
    codes = np.arange(24, dtype="int16").reshape(4, 6)
    g = zms.ManifestGroup(
        arrays={
            "t2m": source_array(
                folder / "t2m.bin",
                t2m,
                chunks=(4, 5),
                missing={(2, 1)},
                inline={(0, 1)},
                fill_value=-9999.0,
                compressors=zarr.codecs.GzipCodec(level=1),
                dimension_names=["y", "x"],
                attributes={"units": "K", "scale": 1.5},
                **options,
            )
        },
        groups={
            "sub": zms.ManifestGroup(
                arrays={
                    "codes": source_array(
                        folder / "sub" / "codes.bin",
                        codes,
                        chunks=(2, 3),
                        dimension_names=["a", "b"],
                    )
                },
                attributes={"level": 2},
            )
        },
        attributes={"title": "demo"},
    )
    return g, {"t2m": expected_t2m, "sub/codes": codes}


def read_all(store: zms.ManifestStore, names) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    return {name: group[name][...] for name in names}


def build_document(folder: Path, encoding: str) -> Path:
    """A small document with its sources inside: nested groups, inline and missing chunks,
    fingerprints, and (columnar) manifests of several blocks."""
    doc = folder / f"{encoding}.zarr"
    data = doc / "data"
    t = source_array(
        data / "t.bin",
        np.arange(60, dtype="float32").reshape(6, 10),
        chunks=(2, 2),
        missing={(0, 1)},
        inline={(1, 1)},
        fill_value=np.nan,
        dimension_names=["y", "x"],
        attributes={"units": "K", "nan": float("nan")},
    )
    c = source_array(data / "c.bin", np.arange(12, dtype="int16"), chunks=(5,))
    group = zms.ManifestGroup(
        arrays={"t": t},
        groups={"sub": zms.ManifestGroup(arrays={"c": c}, attributes={"n": 1})},
        attributes={"title": "fuzz"},
    )
    zms.write_manifest(group, doc, encoding=encoding)
    return doc


def open_and_read(doc: Path, **options) -> dict[str, np.ndarray]:
    """Open ``doc`` (a :func:`build_document`) and read every array of it through zarr."""
    store = zms.ManifestStore.open(doc, **options)
    group = zarr.open_group(store, mode="r")
    return {path: np.asarray(array[...]) for path, array in group.arrays()} | {
        f"sub/{path}": np.asarray(array[...]) for path, array in group["sub"].arrays()
    }
