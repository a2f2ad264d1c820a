"""Reopening 100,000 references to the first chunk: a chunk-manifest document vs kerchunk JSON.

Target (issue 4): reopening a 100,000-reference document and reading its first
chunk takes <= 20 ms; VirtualiZarr re-reading the same references from kerchunk
JSON takes about 2 s. Both sides are timed in process, imports excluded, best of
several runs, in the same run of this script:

- ours: ``ManifestStore.open(doc)`` then ``zarr.open_group(store)["t2m"][first chunk]``;
- VirtualiZarr (from /work/peers/.venv, in a subprocess): ``KerchunkJSONParser`` to a
  ManifestStore then the same zarr read, and ``open_virtual_dataset`` on the same JSON.

    .venv/bin/python benchmarks/document_reopen.py [--references 100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import zarr

import zarr_manifest_store as zms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from document_scale import CHUNK, best, build

PEERS = Path("/work/peers/.venv/bin/python")

PEER_SCRIPT = textwrap.dedent(
    """
    import sys, time, json
    import zarr
    from obstore.store import LocalStore
    from obspec_utils.registry import ObjectStoreRegistry
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import KerchunkJSONParser

    url, repeat = sys.argv[1], int(sys.argv[2])
    registry = ObjectStoreRegistry({"file://": LocalStore()})

    def first_chunk():
        store = KerchunkJSONParser()(url, registry)
        return zarr.open_group(store, mode="r")["t2m"][:4, :8]

    def dataset():
        return open_virtual_dataset(url, registry=registry, parser=KerchunkJSONParser())

    out = {}
    for name, fn in (("first_chunk", first_chunk), ("open_virtual_dataset", dataset)):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        out[name] = min(times)
    print(json.dumps(out))
    """
)


def kerchunk_json(group: zms.ManifestGroup, path: Path) -> None:
    """The same references as kerchunk JSON v1 (Zarr v2 metadata), as kerchunk writes them."""
    array = group["t2m"]
    refs: dict[str, object] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "t2m/.zarray": json.dumps(
            {
                "shape": list(array.shape),
                "chunks": list(array.metadata.chunks),
                "dtype": "<f4",
                "compressor": None,
                "filters": None,
                "fill_value": 0.0,
                "order": "C",
                "zarr_format": 2,
            }
        ),
        "t2m/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["time", "x"]}),
    }
    for coords, ref in array.manifest.items():
        refs["t2m/" + ".".join(map(str, coords))] = [f"file://{ref.path}", ref.offset, ref.length]
    path.write_text(json.dumps({"version": 1, "refs": refs}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = folder / "sources"
        sources.mkdir()
        group = build("regular", args.references, sources)
        doc = folder / "doc.zarr"
        zms.write_manifest(group, doc)
        refs = folder / "refs.json"
        kerchunk_json(group, refs)

        def ours() -> None:
            store = zms.ManifestStore.open(doc, allow=[str(sources)])
            assert zarr.open_group(store, mode="r")["t2m"][: CHUNK[0], : CHUNK[1]].shape == CHUNK

        ours_time = best(ours, args.repeat)
        size = sum(p.stat().st_size for p in doc.rglob("*") if p.is_file())
        print(
            f"{args.references:,} references: chunk-manifest document {size / 1e3:.0f} kB, "
            f"kerchunk JSON {refs.stat().st_size / 1e6:.1f} MB"
        )
        print(f"ours:        reopen + first chunk {ours_time * 1e3:7.1f} ms  (target <= 20 ms)")
        if not PEERS.exists():
            print("VirtualiZarr: /work/peers/.venv not found, peer comparison skipped")
            return
        done = subprocess.run(
            [str(PEERS), "-c", PEER_SCRIPT, f"file://{refs}", str(max(2, args.repeat // 3))],
            capture_output=True,
            text=True,
            check=True,
        )
        peer = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"VirtualiZarr: kerchunk JSON -> ManifestStore + first chunk "
            f"{peer['first_chunk'] * 1e3:7.1f} ms ({peer['first_chunk'] / ours_time:.0f}x ours); "
            f"open_virtual_dataset {peer['open_virtual_dataset'] * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
