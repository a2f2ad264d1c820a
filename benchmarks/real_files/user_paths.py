"""What a user does with one real file, path by path, each timed in a fresh process.

The paths (issue 18's hidden corpus times these): ``scan`` (``on_unsupported="skip"``);
``open_group`` (``zarr.open_group`` on the store, then every member listed);
``open_zarr`` (``xr.open_zarr(store)``); ``datatree`` (``xr.open_datatree(store)``,
xarray's Zarr engine); ``engine_tree`` (the same through the ``zarr_manifest`` engine);
``read`` (every array read through zarr); ``virtual`` (``zms.open_virtual_datatree``).
Each path after ``scan`` starts from the scan; only the path itself is timed (CPU and
wall seconds of its process). ``--before PATH`` runs the same paths with the package found
at PATH (another checkout) in alternation with this one, and prints the ratios.
``--floor`` adds zarr's and xarray's own cost: the same path on a zarr ``MemoryStore``
holding the same keys (every ``zarr.json`` and chunk the store serves), as served
(``floor``) and with zarr's consolidated metadata (``consolidated``); the ``zarr_manifest``
engine's floor is xarray's Zarr engine on them. What a path costs beyond its floor is ours.
Target: every path well under 60 s on a loaded 2-core machine (aim: 10 s).

    .venv/bin/python -m benchmarks.real_files.user_paths FILE [--before /work/base5]
        [--floor] [--rounds 1] [--paths scan,open_group,...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PATHS = ("scan", "open_group", "open_zarr", "datatree", "engine_tree", "read", "virtual")
TARGET_SECONDS = 60.0
FLOORS = ("floor", "consolidated")
"""The MemoryStore copies that time zarr's and xarray's own cost (``--floor``)."""

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import xarray as xr, zarr
import zarr_manifest_store as zms
from zarr.storage import MemoryStore
path, which, floor = sys.argv[1], sys.argv[2], sys.argv[3]

def copied(store, consolidated):  # a MemoryStore holding every key the store serves
    async def copy(memory):
        async for key in store.list():
            await memory.set(key, await store.get(key, zarr.buffer.default_buffer_prototype()))
        return memory
    memory = zarr.core.sync.sync(copy(MemoryStore()))
    if consolidated:
        zarr.consolidate_metadata(memory)
    return memory

def read_all(store):
    root = zarr.open_group(store, mode="r")
    for name in arrays:
        root[name][...]

def members(store):
    return list(zarr.open_group(store, mode="r").members(max_depth=None))

work = {
    "open_group": members,
    "open_zarr": lambda s: xr.open_zarr(s, chunks=None),
    "datatree": lambda s: xr.open_datatree(s, engine="zarr", chunks=None),
    "engine_tree": lambda s: xr.open_datatree(
        s, engine="zarr_manifest" if isinstance(s, zms.ManifestStore) else "zarr", chunks=None
    ),
    "read": read_all,
}
group = None if which == "virtual" else zms.scan(path, on_unsupported="skip")
if group is not None:
    arrays = [name for name, node in group.walk() if isinstance(node, zms.ManifestArray)]
    store = zms.ManifestStore(group)
    if floor:
        store = copied(store, consolidated=floor == "consolidated")
wall, cpu = time.perf_counter(), time.process_time()
if which == "scan":
    zms.scan(path, on_unsupported="skip")
elif which == "virtual":
    zms.open_virtual_datatree(path, on_unsupported="skip")
else:
    work[which](store)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def run(python_path: str | None, file: str, which: str, floor: str = "") -> dict[str, float]:
    """One path in a fresh interpreter (``python_path`` first on its PYTHONPATH), on the
    store or, with ``floor``, on a MemoryStore copy of it."""
    env = dict(os.environ)
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [python_path, env.get("PYTHONPATH")]))
    file = os.path.abspath(file)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, file, which, floor],
        env=env,
        cwd=os.path.dirname(file),  # not a checkout: PYTHONPATH decides
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--before", help="another checkout's folder, for ratios")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--floor", action="store_true", help="time zarr's floor too")
    args = parser.parse_args()
    contenders = {"now": None, **({"before": args.before} if args.before else {})}
    if args.floor:
        contenders |= {"floor": "floor", "consolidated": "consolidated"}
    print(f"{args.file}  (load average {os.getloadavg()[0]:.1f})")
    print(f"{'path':12s} " + "  ".join(f"{n + ' cpu/wall s':>22s}" for n in contenders), "ratios")
    for which in args.paths.split(","):
        times: dict[str, list[dict[str, float]]] = {n: [] for n in contenders}
        for _ in range(args.rounds):
            for name, where in contenders.items():  # alternated, round by round
                if name in FLOORS and which in ("scan", "virtual"):
                    continue  # no store: nothing of zarr's to separate
                floor = where if name in FLOORS else ""
                times[name].append(run(None if floor else where, args.file, which, floor))
        medians = {
            n: {k: statistics.median(t[k] for t in ts) for k in ("cpu", "wall")}
            for n, ts in times.items()
            if ts
        }
        cells = "  ".join(
            f"{medians[n]['cpu']:10.2f} /{medians[n]['wall']:9.2f}"
            if n in medians
            else f"{'-':>22s}"
            for n in contenders
        )
        now = medians["now"]["cpu"]
        ratios = "  ".join(
            f"{now / medians[n]['cpu']:.2f}x {n}"
            for n in ("before", *FLOORS)
            if n in medians and medians[n]["cpu"] > 0
        )
        over = "  OVER TARGET" if medians["now"]["wall"] > TARGET_SECONDS else ""
        print(f"{which:12s} {cells}  {ratios} (cpu){over}", flush=True)


if __name__ == "__main__":
    main()
