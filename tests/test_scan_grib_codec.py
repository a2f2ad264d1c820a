"""The GRIB codec on untrusted bytes, without ecCodes, and on real GRIB files published on PyPI.

Hostile messages are decoded in a child interpreter whose address space is capped: each
must be refused with a ``ManifestError`` (or decode to the chunk's size), never crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import zarr
from samples import Pin, sample
from test_docs import Page
from test_scan_grib import assert_as_cfgrib, cfgrib, write_grib

import zarr_manifest_store as zms
from zarr_manifest_store.format_codecs.grib import decode_message

eccodes = pytest.importorskip("eccodes")

ADDRESS_SPACE = 3 << 30
SHAPE = (31, 16)
CFGRIB = Pin(
    "cfgrib",
    "0.9.15.1",
    "cfgrib-0.9.15.1.tar.gz",
    "d959d8b97e55a63646fa86686b297905ff7f2918a91e3a11d6292dab09598e4d",
)
SAMPLE_DATA = "cfgrib-0.9.15.1/tests/sample-data"


@pytest.fixture(scope="module")
def message(tmp_path_factory) -> bytes:
    """One GRIB2 message of 31 x 16 points, simply packed, with a bitmap."""
    values = np.linspace(250, 300, 496)
    values[::5] = np.nan
    path = tmp_path_factory.mktemp("grib") / "one.grib2"
    return write_grib(path, [{"shortName": "t", "values": values}]).read_bytes()


def section(raw: bytes, number: int) -> int:
    """Where section ``number`` starts in the message ``raw``."""
    pos = 16
    while raw[pos + 4] != number:
        pos += int.from_bytes(raw[pos : pos + 4], "big")
    return pos


def patched(raw: bytes, at: int, value: bytes) -> bytes:
    return raw[:at] + value + raw[at + len(value) :]


def hostile(raw: bytes) -> dict[str, bytes]:
    s3, s5, s7 = section(raw, 3), section(raw, 5), section(raw, 7)
    return {
        "not GRIB": b"GRAB" + raw[4:],
        "edition 1": patched(raw, 7, b"\x01"),
        "a total length past the chunk": patched(raw, 8, (len(raw) + 10).to_bytes(8, "big")),
        "a total length short of the chunk": patched(raw, 8, (len(raw) - 8).to_bytes(8, "big")),
        "a section running past the message": patched(raw, s5, (1 << 30).to_bytes(4, "big")),
        "a section too short": patched(raw, s3, (2).to_bytes(4, "big")),
        "more points than the chunk": patched(raw, s3 + 6, (10**8).to_bytes(4, "big")),
        "more packed values than points": patched(raw, s5 + 5, (10**8).to_bytes(4, "big")),
        "no 7777": raw[:-4] + b"7778",
        "two fields in one message": raw[:-4] + raw[s7 : s7 + 5] + b"7777",
        "huge bits per value": patched(raw, s5 + 19, b"\xff"),
        "packed data cut short": patched(raw, s7, (6).to_bytes(4, "big"))[: s7 + 6]
        + b"\x00" * (len(raw) - s7 - 10)
        + b"7777",
    }


CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import zarr_manifest_store as zms
from zarr_manifest_store.format_codecs.grib import decode_message

for name, hexed in json.loads(sys.argv[1]).items():
    try:
        values = decode_message(bytes.fromhex(hexed), {shape})
        print(name, "READ", values.shape, flush=True)
    except zms.ManifestError as e:
        print(name, "REFUSED", str(e).replace(chr(10), " "), flush=True)
    except BaseException as e:
        print(name, "OTHER", type(e).__name__, e, flush=True)
"""


def test_hostile_messages_are_refused_without_crashing(message):
    attacks = hostile(message)
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(cap=ADDRESS_SPACE, shape=SHAPE),
         json.dumps({k: v.hex() for k, v in attacks.items()})],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == len(attacks), done.stdout + done.stderr[-2000:]
    for name, line in zip(attacks, lines, strict=True):
        verdict = line.removeprefix(name).split()[0]
        if name in ("huge bits per value", "packed data cut short"):
            assert verdict in ("REFUSED", "READ"), line  # ecCodes' own checks, or garbage values
        else:
            assert verdict == "REFUSED", line
    assert "only GRIB2" in lines[1]
    assert "runs past" in lines[2]


def test_a_well_formed_message_decodes_to_cfgrib_s_values(message, tmp_path):
    values = decode_message(message, SHAPE)
    assert values.dtype == np.float32
    assert np.isnan(values).sum() == 100
    path = tmp_path / "one.grib2"
    path.write_bytes(message)
    np.testing.assert_array_equal(values, cfgrib(path).t.values)


def test_a_hostile_chunk_read_through_the_store_names_the_array_and_chunk(message, tmp_path):
    path = tmp_path / "one.grib2"
    path.write_bytes(message)
    good = zms.scan_grib(path)
    bad = tmp_path / "bad.grib2"
    bad.write_bytes(hostile(message)["more points than the chunk"])
    t = good["t"]
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.array([[str(bad)]]), offsets=np.array([[0]]), lengths=np.array([[len(message)]])
    )
    group = zms.ManifestGroup(
        arrays={"t": zms.ManifestArray(metadata=t.metadata, manifest=manifest)}
    )
    array = zarr.open_group(zms.ManifestStore(group), mode="r")["t"]
    with pytest.raises(zms.ManifestError, match=r"'t'.*c/0/0.*10000000\d points"):
        array[...]


NO_ECCODES = """
import sys
sys.modules["eccodes"] = None  # as if the grib extra were not installed
import zarr, zarr_manifest_store as zms
try:
    zms.scan_grib({path!r})
except ImportError as e:
    print("SCAN", e)
store = zms.ManifestStore.open({document!r}, allow=[{folder!r}])
try:
    zarr.open_group(store, mode="r")["t"][...]
except Exception as e:
    print("READ", type(e).__name__, e)
"""


def test_without_eccodes_scanning_and_reading_name_the_extra(message, tmp_path):
    path = tmp_path / "one.grib2"
    path.write_bytes(message)
    document = tmp_path / "one.zarr"
    zms.write_manifest(zms.scan_grib(path), document)
    code = NO_ECCODES.format(path=str(path), document=str(document), folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    scan, read = done.stdout.splitlines()
    assert scan.startswith("SCAN reading GRIB needs ecCodes")
    assert "[grib]" in scan
    assert "zarr-manifest-store[grib]" in read, read


# ---------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    "name", ["regular_ll_msl.grib", "regular_gg_ml_g2.grib", "step_60m.grib", "hpa_and_pa.grib",
             "cfrzr_and_cprat.grib"],
)  # fmt: skip
def test_real_grib2_files_read_as_cfgrib_reads_them(name):
    path = sample(CFGRIB, f"{SAMPLE_DATA}/{name}")
    g = zms.scan_grib(path)
    cubes = g.groups.items() if g.groups else [(None, g)]
    for cube_name, cube in cubes:
        keys = (
            dict(zip(("typeOfLevel", "stepType"), cube_name.split("_"), strict=True))
            if cube_name
            else {}
        )
        assert_as_cfgrib(cube, path, **keys)


def test_real_files_cfgrib_cannot_place_on_a_grid_are_refused_naming_why():
    grib1 = sample(CFGRIB, f"{SAMPLE_DATA}/era5-levels-members.grib")
    with pytest.raises(zms.UnsupportedDatasetError, match="GRIB edition 1"):
        zms.scan(grib1)
    mercator = sample(CFGRIB, f"{SAMPLE_DATA}/ds.waveh.5.grib")
    with pytest.raises(zms.UnsupportedDatasetError, match="'mercator'"):
        zms.scan_grib(mercator)
    scanning = sample(CFGRIB, f"{SAMPLE_DATA}/alternate-scanning.grib")
    with pytest.raises(zms.UnsupportedDatasetError, match="alternativeRowScanning"):
        zms.scan_grib(scanning)


def test_page_docs_howto_grib(tmp_path, monkeypatch):
    path = sample(CFGRIB, f"{SAMPLE_DATA}/hpa_and_pa.grib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hpa_and_pa.grib").write_bytes(path.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Page("docs/howto/grib.md").run() == 4
