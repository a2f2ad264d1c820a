"""Every code example of the docs runs, and shows what it prints; the reference is up to date.

A page's ``python`` blocks run in order in one namespace, in a fresh folder holding the sample
files (``doc_files.py``); a ``text`` block right after a ``python`` block is the output it must
print. In ``console`` blocks, each ``$ zarr-manifest ...`` line runs the command line (as the
shell would: quotes removed, ``$VARIABLES`` expanded) and must exit with status 0; the lines
after it are output it must print. ``...`` stands for any text within a line, and on a line of
its own for any number of lines; times in seconds may differ. A few commands are run elsewhere:
see ``RUN_ELSEWHERE``. ``pycon`` blocks (docstring examples in the reference) run as doctests,
and ``py`` blocks are the reference's signatures.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import os
import pkgutil
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from doc_files import copy_sample_folder, write_sample_folder

import zarr_manifest_store
from zarr_manifest_store.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md"))]

RUN_ELSEWHERE = {
    "make demo": "tests/test_demo.py runs the demo, the same code",
    "make test": "the test suite itself",
    "python -m conformance zarr_manifest_store": "tests/test_conformance.py runs the suite",
}
TIMING = re.compile(r"\d+\\\.\d+\\ s\b")
"""A time in seconds (``0.48 s``, escaped), which the docs show but no run repeats exactly."""
HTTP_PLACEHOLDER = "https://data.example.org/"
"""Documented HTTP URLs start with this; the tests serve them from a local range-capable server."""


@dataclass
class Block:
    language: str
    text: str
    line: int


def blocks(markdown: str) -> list[Block]:
    found = []
    for match in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", markdown, re.M | re.S):
        line = markdown.count("\n", 0, match.start()) + 1
        found.append(Block(match.group(1), match.group(2), line))
    return found


def assert_shows(expected: str, actual: str, where: str) -> None:
    """Every expected line matches an actual line, in order; ``...`` is a wildcard."""
    lines = actual.splitlines()
    position = 0
    for wanted in expected.splitlines():
        if wanted.strip() == "...":
            continue
        pieces = [TIMING.sub(r"[\\d.]+\\ s", re.escape(p)) for p in wanted.rstrip().split("...")]
        pattern = re.compile(".*".join(pieces) + r"\s*")
        for i in range(position, len(lines)):
            if pattern.fullmatch(lines[i]):
                position = i + 1
                break
        else:
            raise AssertionError(f"{where}: the docs show {wanted!r}, not printed in:\n{actual}")


@pytest.fixture(scope="module")
def sample_template(tmp_path_factory) -> Path:
    return write_sample_folder(tmp_path_factory.mktemp("doc-template"))


@pytest.fixture
def sample_folder(tmp_path, sample_template, monkeypatch) -> Path:
    folder = copy_sample_folder(sample_template, tmp_path / "work")
    monkeypatch.chdir(folder)
    return folder


class Page:
    """Runs a page's examples in order."""

    def __init__(self, path: str, rewrite: Callable[[str], str] = lambda text: text) -> None:
        self.path = path
        self.rewrite = rewrite
        self.namespace: dict[str, object] = {"__name__": "__doc_example__"}

    def run(self) -> int:
        page = blocks((ROOT / self.path).read_text(encoding="utf-8"))
        ran = 0
        for i, block in enumerate(page):
            where = f"{self.path}:{block.line}"
            following = page[i + 1] if i + 1 < len(page) else None
            if block.language == "python":
                printed = self.python(self.rewrite(block.text), where)
                if following is not None and following.language == "text":
                    assert_shows(following.text, printed, where)
                ran += 1
            elif block.language == "console":
                ran += self.console(self.rewrite(block.text), where)
            else:
                # text: output; pycon: docstring examples (doctests); py: signatures (reference)
                assert block.language in ("text", "pycon", "py", ""), (
                    f"{where}: ```{block.language}"
                )
        return ran

    def python(self, code: str, where: str) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, where, "exec"), self.namespace)
        return out.getvalue()

    def console(self, text: str, where: str) -> int:
        ran = 0
        for command, shown in _commands(text):
            argv = shlex.split(os.path.expandvars(command), comments=True)
            if " ".join(argv) in RUN_ELSEWHERE:
                continue
            if argv[0] == "ls":
                assert sorted(os.listdir(argv[1])) == sorted(" ".join(shown).split()), where
            else:
                assert argv[0] == "zarr-manifest", f"{where}: cannot run {command!r} here"
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(argv[1:])
                assert code == 0, f"{where}: {command!r} exited with {code}: {err.getvalue()}"
                assert_shows("\n".join(shown), out.getvalue(), f"{where}: {command}")
            ran += 1
        return ran


def _commands(text: str) -> Iterator[tuple[str, list[str]]]:
    command, shown = None, []
    for line in text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, shown
            command, shown = line[2:], []
        elif command is not None:
            shown.append(line)
    if command is not None:
        yield command, shown


# ---------------------------------------------------------------------- the pages


def test_every_page_is_tested():
    """Each page has a ``test_page_<slug>`` here or in another test file (``test_*.py``)."""
    tested = {
        name.removeprefix("test_page_")
        for path in Path(__file__).parent.glob("test_*.py")
        for name in re.findall(r"^def (test_page_\w+)", path.read_text(encoding="utf-8"), re.M)
    }
    slugs = {_slug(page) for page in PAGES}
    assert slugs <= tested, f"pages without a test: {sorted(slugs - tested)}"


def _slug(page: str) -> str:
    return re.sub(r"\W", "_", page.removesuffix(".md").lower())


def test_page_readme(sample_folder):
    assert Page("README.md").run() >= 1


def test_page_docs_quickstart(sample_folder):
    assert Page("docs/quickstart.md").run() >= 8


def test_page_docs_concepts(sample_folder):
    assert Page("docs/concepts.md").run() >= 5


def test_page_docs_readme(sample_folder):
    assert Page("docs/README.md").run() == 0  # the index: no examples


def test_page_docs_reference(sample_folder):
    """Docstring examples in the reference are run as doctests (test_doctests below)."""
    assert Page("docs/reference.md").run() == 0


def test_page_docs_howto_remote(
    sample_folder, s3_server, gcs_server, azure_server, http_server, monkeypatch
):
    import s3fs

    client = s3_server.client()
    existing = {b["Name"] for b in client.list_buckets()["Buckets"]}
    if "my-bucket" not in existing:
        client.create_bucket(Bucket="my-bucket")
    gcs_server.create_bucket("my-gcs-bucket")
    gcs = gcs_server.filesystem()
    azure = azure_server.filesystem()
    if not azure.exists("my-container"):
        azure_server.create_bucket("my-container")
    for path in sorted((sample_folder / "data").glob("era_*.nc")):
        client.upload_file(str(path), "my-bucket", f"era5/{path.name}")
        gcs.put(str(path), f"gs://my-gcs-bucket/era5/{path.name}")
        azure.put(str(path), f"az://my-container/era5/{path.name}")
        (http_server.root / "era5").mkdir(exist_ok=True)
        (http_server.root / "era5" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint_url)
    for name, value in azure_server.environment.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        page = Page(
            "docs/howto/remote.md",
            lambda text: text.replace(HTTP_PLACEHOLDER, f"{http_server.url}/"),
        )
        assert page.run() >= 13
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key in client.list_objects_v2(Bucket="my-bucket").get("Contents", []):
            client.delete_object(Bucket="my-bucket", Key=key["Key"])


def test_page_docs_howto_parallel(sample_folder, monkeypatch):
    import dask
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        with dask.config.set({"scheduler-address": cluster.scheduler_address}):
            assert Page("docs/howto/parallel.md").run() >= 4


def test_page_docs_howto_kerchunk(sample_folder):
    import zarr_manifest_store as zms

    refs = sample_folder / "refs"
    refs.mkdir()
    days = sorted((sample_folder / "data").glob("era_*.nc"))
    for path in days:
        zms.to_kerchunk(zms.scan(path), refs / f"{path.stem}.json")
    combined = zms.open_virtual_mfdataset([str(p) for p in days])
    combined.virtualize.to_kerchunk(refs / "combined.json")
    assert Page("docs/howto/kerchunk.md").run() >= 6


def test_page_docs_howto_formats(sample_folder):
    assert Page("docs/howto/formats.md").run() >= 3


def test_page_docs_howto_scanning(sample_folder):
    assert Page("docs/howto/scanning.md").run() >= 1


def test_page_docs_howto_spec(sample_folder):
    assert Page("docs/howto/spec.md").run() >= 5


# ---------------------------------------------------------------------- the reference


PROJECT_PYTHON = tuple(map(int, (ROOT / ".python-version").read_text().split(".")[:2]))


def _without_command_line(reference: str) -> str:
    return re.sub(r"\n## Command line\n.*?(?=\n## )", "", reference, flags=re.DOTALL)


def test_reference_is_generated_from_the_current_docstrings():
    sys.path.insert(0, str(DOCS))
    try:
        make_reference = importlib.import_module("make_reference")
    finally:
        sys.path.remove(str(DOCS))
    expected = make_reference.render()
    written = (DOCS / "reference.md").read_text(encoding="utf-8")
    if sys.version_info[:2] != PROJECT_PYTHON:
        # argparse lays out help differently from one Python to the next (3.13 changed its
        # columns and option lists); the file holds the project's Python's layout.
        written, expected = _without_command_line(written), _without_command_line(expected)
    assert written == expected, (
        "docs/reference.md is out of date: run python docs/make_reference.py"
    )
    for name in zarr_manifest_store.__all__:
        assert f"### zms.{name}\n" in expected


# ---------------------------------------------------------------------- docstrings


def _modules() -> list[str]:
    names = ["zarr_manifest_store"]
    for info in pkgutil.walk_packages(zarr_manifest_store.__path__, "zarr_manifest_store."):
        names.append(info.name)
    return sorted(names)


def test_every_public_name_has_a_docstring_with_an_example():
    import zarr_manifest_store.xarray as layer

    missing = []
    public = {name: getattr(zarr_manifest_store, name) for name in zarr_manifest_store.__all__}
    public.update(
        {f"ds.virtualize.{name}": getattr(layer.VirtualizeAccessor, name) for name in
         ("to_group", "to_store", "to_zarr", "to_kerchunk", "rename_paths")}
    )  # fmt: skip
    for name, obj in public.items():
        doc = obj.__doc__ or ""
        if ">>>" not in doc:
            missing.append(name)
    assert not missing, f"public names without an example in their docstring: {missing}"


def test_doctests(sample_folder):
    """The examples in the docstrings run and print what they show (in the sample folder)."""
    import numpy as np
    import xarray as xr
    import zarr

    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    extras = {"zms": zarr_manifest_store, "np": np, "xr": xr, "zarr": zarr}
    report = io.StringIO()
    examples = 0
    for module in _modules():
        for test in finder.find(importlib.import_module(module), module, extraglobs=extras):
            examples += len(test.examples)
            runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, report.getvalue()
    assert examples > 50
