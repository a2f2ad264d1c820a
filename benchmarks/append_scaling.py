"""Appending one day to a document of 1, 10 and 100 years of daily files: the cost must not grow
with the document beyond reading its metadata.

The archive: one netCDF file a day, each with ``t2m`` and ``tp`` (24, 73, 144) float32 in
chunks of (1, 73, 144) — 48 chunk references a day (175,200 for 10 years) — and the
day's 24 hourly times loaded (stored inline, as ``open_virtual_dataset`` stores a loaded
coordinate), ``lat`` / ``lon`` inline. Manifests are built by hand (the sources need not
exist: appending reads only the stored coordinate's last chunk and compares ``lat`` /
``lon``). For each size and encoding (``json``, ``columnar``), the document is written
once, then a day is appended ``--appends`` times, each timed (``zms.append_manifest``:
checks, lock, writes); the median and the worst are reported, in wall-clock and CPU
seconds (the CPU time of the process says more on a busy machine), with the size of the
root ``zarr.json`` (the metadata every append reads and rewrites).

    .venv/bin/python benchmarks/append_scaling.py [--years 1,10,100] [--appends 5] [--parts 365]

Target (issue 19): <= 0.2 s per append at 10 years, with each encoding.

Appends add manifest parts, so a document grown day by day is read through many of them:
``--parts N`` also compares N days written at once with one day written, then N - 1 days
appended one by one (N parts per grown array): opening the document and looking up every
``t2m`` chunk's reference in random order, and loading the ``t2m`` manifest whole.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import zarr_manifest_store as zms

STEPS, NY, NX = 24, 73, 144
HOURS0 = 0


def _metadata(shape, chunks, dtype, dims, codecs=None, attributes=None, fill=0):
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": codecs or [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": attributes or {},
        "dimension_names": list(dims),
    }


def days(first: int, count: int) -> zms.ManifestGroup:
    """``count`` daily files from day ``first`` on, combined."""
    n = count * STEPS
    arrays = {}
    zstd = [
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "zstd", "configuration": {"level": 1, "checksum": False}},
    ]
    for k, name in enumerate(("t2m", "tp")):
        day = np.repeat(np.arange(first, first + count), STEPS)
        paths = np.array(
            [f"/archive/{d // 365:03d}/day{d:06d}.nc" for d in range(first, first + count)]
        )
        manifest = zms.ChunkManifest.from_arrays(
            paths=np.repeat(paths, STEPS).reshape(n, 1, 1),
            offsets=(4096 + 200_000 * (np.arange(n) % STEPS) + 100_000 * k).reshape(n, 1, 1),
            lengths=np.full((n, 1, 1), 90_000),
        )
        del day
        meta = _metadata(
            (n, NY, NX),
            (1, NY, NX),
            "float32",
            ("time", "lat", "lon"),
            zstd,
            {"units": "K" if k == 0 else "m"},
            fill=float("nan"),
        )
        arrays[name] = zms.ManifestArray(metadata=meta, manifest=manifest)
    hours = np.arange(first * STEPS, (first + count) * STEPS, dtype="<i8")
    time_manifest = zms.ChunkManifest.from_arrays(
        paths=np.full(count, ""),
        offsets=np.zeros(count, dtype=np.uint64),
        lengths=np.zeros(count, dtype=np.uint64),
    ).with_inline({(d,): hours[d * STEPS : (d + 1) * STEPS].tobytes() for d in range(count)})
    arrays["time"] = zms.ManifestArray(
        metadata=_metadata(
            (n,),
            (STEPS,),
            "int64",
            ("time",),
            attributes={"units": "hours since 2000-01-01", "calendar": "standard"},
        ),
        manifest=time_manifest,
    )
    for name, values in (("lat", np.linspace(90, -90, NY)), ("lon", np.arange(NX) * 2.5)):
        manifest = zms.ChunkManifest.from_arrays(paths=[""], offsets=[0], lengths=[0]).with_inline(
            {(0,): values.astype("<f8").tobytes()}
        )
        arrays[name] = zms.ManifestArray(
            metadata=_metadata(values.shape, values.shape, "float64", (name,)), manifest=manifest
        )
    return zms.ManifestGroup(arrays=arrays, attributes={"title": "daily archive"})


def measure(years: int, encoding: str, appends: int, folder: Path) -> dict[str, float]:
    count = 365 * years
    url = folder / f"{encoding}-{years}y.zarr"
    shutil.rmtree(url, ignore_errors=True)
    zms.write_manifest(days(0, count), url, encoding=encoding)
    new_days = [days(count + i, 1) for i in range(appends)]
    times, cpu = [], []
    for day in new_days:
        started, started_cpu = time.perf_counter(), time.process_time()
        zms.append_manifest(day, url, append_dim="time")
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    store = zms.ManifestStore.open(url)
    assert store.root["t2m"].shape[0] == (count + appends) * STEPS
    assert store.root["t2m"].manifest.get((count * STEPS, 0, 0)).path.endswith(f"day{count:06d}.nc")
    return {
        "references": (count + appends) * 2 * STEPS,
        "median": statistics.median(times),
        "worst": max(times),
        "cpu": statistics.median(cpu),
        "cpu_worst": max(cpu),
        "metadata": (url / "zarr.json").stat().st_size,
    }


def parts_read(days_: int, encoding: str, folder: Path) -> dict[str, dict[str, float]]:
    """Reading a document of ``days_`` days written at once, and grown by daily appends."""
    whole, grown = folder / f"whole-{encoding}.zarr", folder / f"grown-{encoding}.zarr"
    for url in (whole, grown):
        shutil.rmtree(url, ignore_errors=True)
    zms.write_manifest(days(0, days_), whole, encoding=encoding)
    zms.write_manifest(days(0, 1), grown, encoding=encoding)
    for day in range(1, days_):
        zms.append_manifest(days(day, 1), grown, append_dim="time")
    order = np.random.default_rng(0).permutation(days_ * STEPS)
    out = {}
    for label, url in (("written at once", whole), (f"{days_} parts", grown)):
        timings = {"lookups": [], "load": []}
        for _ in range(3):
            started = time.process_time()
            manifest = zms.ManifestStore.open(url).root["t2m"].manifest
            for row in order:
                manifest.get((int(row), 0, 0))
            timings["lookups"].append(time.process_time() - started)
            started = time.process_time()
            zms.ManifestStore.open(url).root["t2m"].manifest.load()
            timings["load"].append(time.process_time() - started)
        out[label] = {k: min(v) for k, v in timings.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", default="1,10,100")
    parser.add_argument("--appends", type=int, default=5)
    parser.add_argument("--encodings", default="json,columnar")
    parser.add_argument("--parts", type=int, default=0, help="also time reading N parts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zms-append-") as tmp:
        print(
            f"{'years':>5} {'encoding':>9} {'references':>11} {'median s':>9} {'worst s':>8} "
            f"{'cpu s':>6} {'cpu worst':>9} {'zarr.json':>10}"
        )
        for years in map(int, args.years.split(",")):
            for encoding in args.encodings.split(","):
                r = measure(years, encoding, args.appends, Path(tmp))
                print(
                    f"{years:>5} {encoding:>9} {r['references']:>11,} {r['median']:>9.3f} "
                    f"{r['worst']:>8.3f} {r['cpu']:>6.3f} {r['cpu_worst']:>9.3f} "
                    f"{r['metadata'] / 1e3:>8.0f} kB"
                )
        if args.parts:
            print(
                f"\n{'encoding':>9} {'document':>16} {'open+lookups cpu s':>19} {'load cpu s':>11}"
            )
            for encoding in args.encodings.split(","):
                for label, r in parts_read(args.parts, encoding, Path(tmp)).items():
                    print(f"{encoding:>9} {label:>16} {r['lookups']:>19.3f} {r['load']:>11.3f}")


if __name__ == "__main__":
    main()
