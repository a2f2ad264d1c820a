"""The zarr-manifest command line, run through ``main(argv)`` against generated netCDF-4 files."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from helpers import array_metadata

import zarr_manifest_store as zms
from zarr_manifest_store.cli import error_line, main
from zarr_manifest_store.cli.demo import write_archive
from zarr_manifest_store.cli.progress import Progress
from zarr_manifest_store.cli.render import format_bytes

FILES = 3
STEPS = 24  # per file
CHUNKS_PER_FILE = 4  # 24 hourly steps in chunks of 6


@pytest.fixture(scope="module")
def archive_template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    write_archive(folder, files=FILES)
    return folder


@pytest.fixture
def archive(tmp_path, archive_template) -> Path:
    """A fresh copy of three daily files (``era_2026-01-0{1,2,3}.nc``), each test its own."""
    folder = tmp_path / "archive"
    shutil.copytree(archive_template, folder)
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def stored_chunk_bytes(paths: list[Path], name: str) -> list[int]:
    """The size of every stored chunk of ``name``, file by file, as HDF5 reports it."""
    sizes = []
    for path in paths:
        with h5py.File(path) as f:
            f[name].id.chunk_iter(lambda info: sizes.append(info.size))
    return sizes


def scanned(capsys, archive: Path, tmp_path: Path, *options: str) -> Path:
    out = tmp_path / "era.zarr"
    code, _, err = run(capsys, "scan", f"{archive}/*.nc", "-o", out, *options)
    assert code == 0, err
    return out


# ---------------------------------------------------------------------- scan


def test_scan_writes_one_document_equal_to_the_files(capsys, archive, tmp_path):
    out = tmp_path / "era.zarr"
    code, stdout, stderr = run(capsys, "scan", f"{archive}/*.nc", "-o", out)
    assert code == 0, stderr
    assert stderr == ""  # no progress bar when stderr is not a terminal
    paths = sorted(archive.glob("*.nc"))
    referenced = sum(stored_chunk_bytes(paths, "t2m") + stored_chunk_bytes(paths, "tp"))
    expected = (
        f"scanned 3 files into {out}: 5 arrays, {2 * FILES * CHUNKS_PER_FILE} references, "
        f"{format_bytes(referenced)} referenced, in "
    )
    assert stdout.startswith(expected), stdout
    assert stdout.count("\n") == 1

    got = xr.open_dataset(out, engine="zarr_manifest", allow=[archive]).load()
    with xr.open_mfdataset(paths, engine="h5netcdf") as files:
        xr.testing.assert_identical(got, files.load())


def test_scan_options_reach_the_document(capsys, archive, tmp_path):
    out = scanned(
        capsys,
        archive,
        tmp_path,
        "--drop",
        "tp",
        "--encoding",
        "columnar",
        "--combine",
        "nested",
        "--concat-dim",
        "time",
    )
    store = zms.ManifestStore.open(out)
    assert sorted(store.root.arrays) == ["lat", "lon", "t2m", "time"]
    assert (out / "t2m" / "manifest").is_dir()  # the columnar encoding
    assert not (out / "t2m" / "manifest.json").exists()
    assert store.root["t2m"].shape == (FILES * STEPS, 73, 144)


def test_scan_with_threads_writes_the_same_document(capsys, archive, tmp_path):
    one = scanned(capsys, archive, tmp_path)
    code, _, err = run(capsys, "scan", f"{archive}/*.nc", "-o", tmp_path / "two.zarr", "-j", "2")
    assert code == 0, err
    a = zms.ManifestStore.open(one, load=True).root
    b = zms.ManifestStore.open(tmp_path / "two.zarr", load=True).root
    assert a.equals(b)


def test_scan_several_arguments_keep_their_order(capsys, archive, tmp_path):
    first, second, third = sorted(archive.glob("*.nc"))
    out = tmp_path / "nested.zarr"
    code, _, err = run(
        capsys,
        "scan",
        third,
        first,
        second,
        "-o",
        out,
        "--combine",
        "nested",
        "--concat-dim",
        "time",
    )
    assert code == 0, err
    time = xr.open_dataset(out, engine="zarr_manifest")["time"].values
    assert time[0] == np.datetime64("2026-01-03T00:00")  # the third file first, as given
    assert time[STEPS] == np.datetime64("2026-01-01T00:00")


def test_scan_refuses_to_replace_a_document_before_scanning(capsys, archive, tmp_path):
    out = scanned(capsys, archive, tmp_path)
    before = (out / "zarr.json").read_bytes()
    # a missing file in the list shows that nothing was scanned: the existing document is named first
    code, _, stderr = run(capsys, "scan", archive / "nothere.nc", "-o", out)
    assert code == 2
    assert stderr == (
        f"zarr-manifest: error: a chunk-manifest document already exists at {out}; "
        "pass --overwrite to replace it\n"
    )
    assert (out / "zarr.json").read_bytes() == before

    code, _, stderr = run(capsys, "scan", sorted(archive.glob("*.nc"))[0], "-o", out, "--overwrite")
    assert code == 0, stderr
    assert zms.ManifestStore.open(out).root["t2m"].shape == (STEPS, 73, 144)


def test_scan_errors_are_one_line_naming_the_file(capsys, archive, tmp_path):
    bad = archive / "notes.nc"
    bad.write_text("not a netCDF file\n")
    code, stdout, stderr = run(capsys, "scan", f"{archive}/*.nc", "-o", tmp_path / "x.zarr")
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith(f"zarr-manifest: error: cannot identify the format of '{bad}'")
    assert f"while opening {bad}" in stderr
    assert not (tmp_path / "x.zarr").exists()

    code, _, stderr = run(capsys, "scan", f"{archive}/*.nc", "-o", tmp_path / "x.zarr", "--debug")
    assert code == 2
    assert stderr.startswith("Traceback (most recent call last):")
    assert stderr.splitlines()[-1].startswith("zarr-manifest: error: cannot identify the format")


def test_scan_of_a_glob_matching_nothing(capsys, tmp_path):
    code, _, stderr = run(capsys, "scan", f"{tmp_path}/*.nc", "-o", tmp_path / "x.zarr")
    assert (code, stderr) == (2, f"zarr-manifest: error: no files match '{tmp_path}/*.nc'\n")


def test_scan_unsupported_variables_fail_or_are_skipped(capsys, tmp_path):
    path = tmp_path / "refs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(4.0))
        f.create_dataset("refs", data=[f["x"].ref], dtype=h5py.ref_dtype)
    code, _, stderr = run(capsys, "scan", path, "-o", tmp_path / "a.zarr")
    assert code == 2
    assert stderr.count("\n") == 1
    assert "'refs'" in stderr
    assert "on_unsupported='skip'" in stderr

    with pytest.warns(UserWarning, match="left out dataset 'refs'"):
        code, _, stderr = run(
            capsys, "scan", path, "-o", tmp_path / "b.zarr", "--on-unsupported", "skip"
        )
    assert code == 0, stderr
    assert list(zms.ManifestStore.open(tmp_path / "b.zarr").root.arrays) == ["x"]


def test_scan_and_verify_on_s3(capsys, s3, archive, tmp_path):
    fs, bucket, server = s3
    first = sorted(archive.glob("*.nc"))[0]  # one file: scanning through S3 takes many requests
    fs.put(str(first), f"{bucket}/era/{first.name}")
    options = server.storage_options
    flags = [
        "-S", f"key={options['key']}", "-S", f"secret={options['secret']}",
        "-S", f"client_kwargs.endpoint_url={server.endpoint_url}",
        "-S", "client_kwargs.region_name=us-east-1", "-S", "skip_instance_cache=true",
    ]  # fmt: skip
    out = f"s3://{bucket}/era.zarr"
    code, stdout, stderr = run(capsys, "scan", f"s3://{bucket}/era/*.nc", "-o", out, *flags)
    assert code == 0, stderr
    assert stdout.startswith(f"scanned 1 file into {out}: 5 arrays, 8 references")
    assert fs.exists(f"{bucket}/era.zarr/zarr.json")

    code, stdout, stderr = run(capsys, "verify", out, "--allow", f"s3://{bucket}/era/", *flags)
    assert (code, stderr) == (0, "")
    assert stdout == "1 source checked (1 ok): all as scanned\n"

    fs.pipe(f"{bucket}/era/{first.name}", b"replaced")
    code, stdout, _ = run(capsys, "verify", out, "--allow", f"s3://{bucket}/era/", *flags)
    assert code == 1
    assert stdout.splitlines()[0].startswith(f"changed: s3://{bucket}/era/{first.name}: ")


# ---------------------------------------------------------------------- info


def test_info_describes_every_array(capsys, archive, tmp_path):
    out = scanned(capsys, archive, tmp_path)
    paths = sorted(archive.glob("*.nc"))
    t2m = sum(stored_chunk_bytes(paths, "t2m"))
    tp = sum(stored_chunk_bytes(paths, "tp"))
    code, stdout, stderr = run(capsys, "info", out)
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    assert lines[0] == f"{out}: chunk-manifest document"
    block = lines[lines.index("├── t2m  float32 (time: 72, lat: 73, lon: 144)") :][:3]
    assert block[1].strip("│ ") == (
        "chunks (6, 73, 144), grid (12, 1, 1); codecs bytes(endian=little), "
        "shuffle(elementsize=4), zlib(level=4)"
    )
    assert block[2].strip("│ ") == (
        f"12 chunks: 12 references to 3 sources ({format_bytes(t2m)}); none missing"
    )
    assert "└── tp  int16 (time: 72, lat: 73, lon: 144)" in lines
    assert lines[-1].startswith(
        f"total: 5 arrays, 27 chunks: 24 references to 3 source files "
        f"({format_bytes(t2m + tp)}), 3 inline; none missing"
    )

    code, stdout, _ = run(capsys, "info", out, "--json")
    described = json.loads(stdout)
    arrays = {a["path"]: a for a in described["arrays"]}
    assert arrays["t2m"]["bytes_referenced"] == t2m
    assert arrays["tp"]["bytes_referenced"] == tp
    assert (arrays["tp"]["references"], arrays["tp"]["missing"], arrays["tp"]["sources"]) == (
        12,
        0,
        3,
    )
    assert (arrays["time"]["references"], arrays["time"]["inline"]) == (0, 1)
    assert described["totals"]["sources"] == 3


def test_info_never_reads_the_sources(capsys, archive, tmp_path):
    out = scanned(capsys, archive, tmp_path, "--encoding", "columnar")
    shutil.rmtree(archive)
    code, stdout, stderr = run(capsys, "info", out)
    assert (code, stderr) == (0, "")
    assert "24 references to 3 source files" in stdout


def test_info_shows_groups_and_missing_chunks(capsys, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(64))
    manifest = zms.ChunkManifest.from_dict(
        {
            "0": {"path": str(source), "offset": 0, "length": 16},
            "3": {"path": str(source), "offset": 16, "length": 16},
        },
        shape=(4,),
    )
    meta = array_metadata((16,), (4,), fill_value=-1, dimension_names=["x"])
    inner = zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=meta, manifest=manifest)})
    zms.write_manifest(
        zms.ManifestGroup(groups={"forecast": inner}, attributes={"title": "t"}),
        tmp_path / "g.zarr",
    )
    code, stdout, _ = run(capsys, "info", tmp_path / "g.zarr")
    assert code == 0
    assert stdout.splitlines()[1:] == [
        "/ (1 attribute)",
        "└── forecast/ (0 attributes)",
        "    └── v  float32 (x: 16)",
        "            chunks (4,), grid (4,); codecs bytes(endian=little)",
        "            4 chunks: 2 references to 1 source (32 B); 2 missing (50.0%, read as fill value -1.0)",
        "total: 1 array in 2 groups, 4 chunks: 2 references to 1 source file (32 B), 0 inline; "
        "2 missing (50.0%)",
    ]


def test_info_of_a_root_array_with_a_rectilinear_grid(capsys, tmp_path):
    parts = []
    for name, n in (("a.bin", 4), ("b.bin", 5)):
        (tmp_path / name).write_bytes(np.arange(n, dtype="<f4").tobytes())
        manifest = zms.ChunkManifest.from_dict(
            {"0": {"path": str(tmp_path / name), "offset": 0, "length": 4 * n}}
        )
        meta = array_metadata((n,), (n,), dimension_names=["time"])
        parts.append(zms.ManifestArray(metadata=meta, manifest=manifest))
    zms.write_manifest(np.concatenate(parts), tmp_path / "joined.zarr")
    code, stdout, _ = run(capsys, "info", tmp_path / "joined.zarr")
    assert code == 0
    assert stdout.splitlines()[1:] == [
        "/ (root array)  float32 (time: 9)",
        "    chunks (4..5,) (rectilinear), grid (2,); codecs bytes(endian=little)",
        "    2 chunks: 2 references to 2 sources (36 B); none missing",
        "total: 1 array, 2 chunks: 2 references to 2 source files (36 B), 0 inline; none missing",
    ]


def test_info_of_a_missing_document(capsys, tmp_path):
    code, stdout, stderr = run(capsys, "info", tmp_path / "nothere.zarr")
    assert (code, stdout) == (2, "")
    assert stderr == (
        f"zarr-manifest: error: no chunk-manifest document at {tmp_path}/nothere.zarr: "
        f"{tmp_path}/nothere.zarr/zarr.json does not exist\n"
    )


# ---------------------------------------------------------------------- verify


def test_verify_names_every_changed_missing_or_forbidden_source(capsys, archive, tmp_path):
    out = scanned(capsys, archive, tmp_path)
    first, second, third = sorted(archive.glob("*.nc"))
    code, stdout, _ = run(capsys, "verify", out, "--allow", archive)
    assert (code, stdout) == (0, "3 sources checked (3 ok): all as scanned\n")

    code, stdout, _ = run(capsys, "verify", out)
    assert code == 1
    assert stdout.splitlines() == [
        f"forbidden: {first}: outside the allowed prefixes",
        f"forbidden: {second}: outside the allowed prefixes",
        f"forbidden: {third}: outside the allowed prefixes",
        f"hint: to check sources outside the document folder, pass --allow {archive}{os.sep}",
        "3 sources checked (3 forbidden): 3 problems",
    ]

    with open(first, "r+b") as f:  # same size, new contents and modification time
        f.seek(100)
        f.write(b"\0")
    os.utime(first, ns=(0, 10**18))
    third.unlink()
    code, stdout, _ = run(capsys, "verify", out, "--allow", archive)
    assert code == 1
    lines = stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"changed: {first}: ")
    assert lines[1].startswith(f"missing: {third}")
    assert lines[2] == "3 sources checked (1 changed, 1 missing, 1 ok): 2 problems"


# ---------------------------------------------------------------------- to-kerchunk


def test_to_kerchunk_json_and_parquet_hold_the_same_references(capsys, archive, tmp_path):
    out = scanned(capsys, archive, tmp_path)
    code, stdout, _ = run(capsys, "to-kerchunk", out, tmp_path / "refs.json")
    assert code == 0
    assert stdout == (
        f"wrote {out} as kerchunk references (json): {tmp_path / 'refs.json'}, 5 arrays, "
        "24 references\n"
    )
    code, stdout, _ = run(capsys, "to-kerchunk", out, tmp_path / "refs.parq")
    assert code == 0
    assert "(parquet)" in stdout
    assert (tmp_path / "refs.parq" / ".zmetadata").exists()

    document = zms.ManifestStore.open(out, load=True).root
    for refs in ("refs.json", "refs.parq"):
        imported = zms.scan_kerchunk(str(tmp_path / refs))
        for name in ("t2m", "tp"):
            assert imported[name].manifest.equals(document[name].manifest), (refs, name)

    code, _, stderr = run(capsys, "to-kerchunk", out, tmp_path / "refs.parq")
    assert (code, stderr) == (
        2,
        f"zarr-manifest: error: {tmp_path / 'refs.parq'} already exists; pass --overwrite to "
        "replace it\n",
    )
    assert run(capsys, "to-kerchunk", out, tmp_path / "refs.parq", "--overwrite")[0] == 0

    through_fsspec = xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={
            "consolidated": False,
            "zarr_format": 2,
            "storage_options": {"fo": str(tmp_path / "refs.json"), "remote_protocol": "file"},
        },
    )
    expected = xr.open_dataset(out, engine="zarr_manifest", allow=[archive])
    np.testing.assert_array_equal(through_fsspec["t2m"].values, expected["t2m"].values)


# ---------------------------------------------------------------------- the frame


def test_storage_options_combine_json_and_key_values(monkeypatch, tmp_path):
    seen = {}

    def fake_open(url, *, allow=None, storage_options=None, **_):
        seen.update(url=url, allow=allow, storage_options=storage_options)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(zms.ManifestStore, "open", fake_open)
    options_file = tmp_path / "options.json"
    options_file.write_text('{"anon": false, "client_kwargs": {"region_name": "eu-west-1"}}')
    code = main([
        "info", "s3://bucket/doc.zarr", "--storage-options", f"@{options_file}",
        "-S", "client_kwargs.endpoint_url=http://127.0.0.1:9000", "-S", "anon=true",
        "-S", "default_block_size=1024", "--allow", "s3://bucket/a/", "--allow", "s3://bucket/b/",
    ])  # fmt: skip
    assert code == 2
    assert seen == {
        "url": "s3://bucket/doc.zarr",
        "allow": ["s3://bucket/a/", "s3://bucket/b/"],
        "storage_options": {
            "anon": True,
            "client_kwargs": {"region_name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000"},
            "default_block_size": 1024,
        },
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "d.zarr", "-S", "novalue"], "expected KEY=VALUE, got 'novalue'"),
        (["info", "d.zarr", "--storage-options", "[1]"], "expected a JSON object, got list"),
        (["scan", "a.nc", "-o", "b.zarr", "--jobs", "0"], "expected a positive integer, got '0'"),
        (["scan", "a.nc"], "one of the arguments -o/--output --append-to is required"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "scan" in capsys.readouterr().err


def test_error_lines_join_messages_and_notes():
    error = ValueError("f.h5: 2 dataset(s) cannot be described exactly:\n  'a' x\n  'b' y\nPass z.")
    error.add_note("while opening f.h5")
    assert error_line(error) == (
        "f.h5: 2 dataset(s) cannot be described exactly: 'a' x; 'b' y; Pass z.; while opening f.h5"
    )
    assert error_line(PermissionError(13, "source 'x' is outside; add it to allow=[...]")) == (
        "source 'x' is outside; add it to allow=[...] (on the command line: --allow PREFIX)"
    )
    assert error_line(RuntimeError("boom")) == (
        "RuntimeError: boom (run with --debug for the traceback)"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_terminals_only():
    terminal = _Terminal()
    progress = Progress(3, "scanning", terminal)
    for _ in range(3):
        progress.advance()
    progress.close()
    text = terminal.getvalue()
    assert "scanning [" in text
    assert "] 0/3 files" in text
    assert "] 3/3 files" in text  # the last step is always drawn
    assert text.endswith("\r\x1b[K")  # and the line cleared at the end

    plain = io.StringIO()
    progress = Progress(3, "scanning", plain)
    progress.advance()
    progress.close()
    assert plain.getvalue() == ""
