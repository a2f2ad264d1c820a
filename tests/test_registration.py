"""What importing the package does to zarr's configuration: only where the user has not chosen.

Each case runs in a fresh interpreter, since zarr's configuration is process-wide and read
from the environment when zarr is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.registration import PIPELINE_PATH, ZARR_DEFAULTS

FUSED = "zarr.core.codec_pipeline.FusedCodecPipeline"
ZARR_DEFAULT_PIPELINE = ZARR_DEFAULTS["codec_pipeline.path"]
SETTINGS = ("codec_pipeline.path", "array.rectilinear_chunks")


def settings_in_fresh_process(
    before_import: str = "", after_import: str = "", **environment: str
) -> dict[str, object]:
    """zarr's two settings once the package is imported in a new interpreter.

    The interpreter's environment holds no ``ZARR_*`` variable but ``environment``;
    ``before_import`` and ``after_import`` run around ``import zarr_manifest_store``.
    """
    code = "\n".join(
        [
            "import json, zarr",
            textwrap.dedent(before_import),
            "import zarr_manifest_store",
            textwrap.dedent(after_import),
            f"print(json.dumps({{k: zarr.config.get(k) for k in {SETTINGS!r}}}))",
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARR_")}
    env.update(environment)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_zarrs_own_defaults_are_the_ones_registration_expects():
    code = f"import json, zarr; print(json.dumps({{k: zarr.config.get(k) for k in {SETTINGS!r}}}))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARR_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(done.stdout) == ZARR_DEFAULTS


def test_import_sets_what_the_user_left_at_zarrs_defaults():
    assert settings_in_fresh_process() == {
        "codec_pipeline.path": PIPELINE_PATH,
        "array.rectilinear_chunks": True,
    }


@pytest.mark.parametrize("value", ["False", "True"])
def test_the_environment_wins(value):
    settings = settings_in_fresh_process(
        ZARR_ARRAY__RECTILINEAR_CHUNKS=value, ZARR_CODEC_PIPELINE__PATH=ZARR_DEFAULT_PIPELINE
    )
    assert settings == {
        "codec_pipeline.path": ZARR_DEFAULT_PIPELINE,
        "array.rectilinear_chunks": value == "True",
    }


def test_a_setting_chosen_before_the_import_wins():
    settings = settings_in_fresh_process(
        before_import=f"zarr.config.set({{'codec_pipeline.path': {FUSED!r}}})"
    )
    assert settings == {"codec_pipeline.path": FUSED, "array.rectilinear_chunks": True}


def test_a_setting_chosen_after_the_import_wins_and_stays():
    after = textwrap.dedent(
        f"""
        zarr.config.set({{'codec_pipeline.path': {FUSED!r}, 'array.rectilinear_chunks': False}})
        import numpy as np, zarr_manifest_store as zms
        array = np.concatenate([zms.ManifestArray(
            metadata=zarr.create_array({{}}, shape=(3,), chunks=(2,), dtype="i1").metadata,
            manifest=zms.ChunkManifest.from_dict({{}}, shape=(2,)),
        )] * 2)
        zms.ManifestStore(zms.ManifestGroup(arrays={{"v": array}}))
        """
    )
    settings = settings_in_fresh_process(after_import=after)
    assert settings == {"codec_pipeline.path": FUSED, "array.rectilinear_chunks": False}


def test_stores_and_documents_leave_zarrs_configuration_alone(tmp_path):
    """Serving and storing a rectilinear array changes no setting; zarr reads it if allowed."""
    metadata = zarr.create_array({}, shape=(3,), chunks=(2,), dtype="i1", fill_value=7).metadata
    part = zms.ManifestArray(
        metadata=metadata, manifest=zms.ChunkManifest.from_dict({}, shape=(2,))
    )
    ragged = zms.ManifestGroup(arrays={"v": np.concatenate([part, part])})
    assert ragged["v"].metadata.chunk_grid.to_dict()["name"] == "rectilinear"
    with zarr.config.set({"array.rectilinear_chunks": False}):
        store = zms.ManifestStore(ragged)
        zms.write_manifest(store, tmp_path / "ragged.zarr")
        reopened = zms.ManifestStore.open(tmp_path / "ragged.zarr", load=True)
        with pytest.raises(ValueError, match=r"array\.rectilinear_chunks"):
            zarr.open_group(reopened, mode="r")["v"]
        assert zarr.config.get("array.rectilinear_chunks") is False
    np.testing.assert_array_equal(zarr.open_group(reopened, mode="r")["v"][:], [7] * 6)
