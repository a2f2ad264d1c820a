"""What a user does with one real file, path by path, each timed in a fresh process.

The paths (issue 18's hidden corpus times these): ``scan`` (``on_unsupported="skip"``);
``open_group`` (``zarr.open_group`` on the store, then every member listed);
``open_zarr`` (``xr.open_zarr(store)``); ``datatree`` (``xr.open_datatree(store)``,
xarray's Zarr engine); ``engine_tree`` (the same through the ``zarr_manifest`` engine);
``read`` (every array read through zarr); ``virtual`` (``zms.open_virtual_datatree``).
Each path after ``scan`` starts from the scan; only the path itself is timed (CPU and
wall seconds of its process). ``--before PATH`` runs the same paths with the package found
at PATH (another checkout) in alternation with this one, and prints the ratios.
Target: every path well under 60 s on a loaded 2-core machine (aim: 10 s).

    .venv/bin/python -m benchmarks.real_files.user_paths FILE [--before /work/base5]
        [--rounds 1] [--paths scan,open_group,...]
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

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import xarray as xr, zarr
import zarr_manifest_store as zms
path, which = sys.argv[1], sys.argv[2]

def read_all(store):
    root = zarr.open_group(store, mode="r")
    for name, node in store.root.walk():
        if isinstance(node, zms.ManifestArray):
            root[name][...]

def members(store):
    return list(zarr.open_group(store, mode="r").members(max_depth=None))

work = {
    "open_group": members,
    "open_zarr": lambda s: xr.open_zarr(s, chunks=None),
    "datatree": lambda s: xr.open_datatree(s, engine="zarr", chunks=None),
    "engine_tree": lambda s: xr.open_datatree(s, engine="zarr_manifest", chunks=None),
    "read": read_all,
}
group = None if which == "virtual" else zms.scan(path, on_unsupported="skip")
wall, cpu = time.perf_counter(), time.process_time()
if which == "scan":
    zms.scan(path, on_unsupported="skip")
elif which == "virtual":
    zms.open_virtual_datatree(path, on_unsupported="skip")
else:
    work[which](zms.ManifestStore(group))
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def run(python_path: str | None, file: str, which: str) -> dict[str, float]:
    """One path in a fresh interpreter (``python_path`` first on its PYTHONPATH)."""
    env = dict(os.environ)
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [python_path, env.get("PYTHONPATH")]))
    file = os.path.abspath(file)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, file, which],
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
    args = parser.parse_args()
    contenders = {"now": None, **({"before": args.before} if args.before else {})}
    print(f"{args.file}  (load average {os.getloadavg()[0]:.1f})")
    print(f"{'path':12s} " + "  ".join(f"{n + ' cpu/wall s':>22s}" for n in contenders), "ratio")
    for which in args.paths.split(","):
        times: dict[str, list[dict[str, float]]] = {n: [] for n in contenders}
        for _ in range(args.rounds):
            for name, where in contenders.items():  # alternated, round by round
                times[name].append(run(where, args.file, which))
        medians = {
            n: {k: statistics.median(t[k] for t in ts) for k in ("cpu", "wall")}
            for n, ts in times.items()
        }
        cells = "  ".join(f"{m['cpu']:10.2f} /{m['wall']:9.2f}" for m in medians.values())
        ratio = (
            f"{medians['now']['cpu'] / medians['before']['cpu']:.2f}x cpu"
            if "before" in medians and medians["before"]["cpu"] > 0
            else ""
        )
        over = "  OVER TARGET" if medians["now"]["wall"] > TARGET_SECONDS else ""
        print(f"{which:12s} {cells}  {ratio}{over}", flush=True)


if __name__ == "__main__":
    main()
