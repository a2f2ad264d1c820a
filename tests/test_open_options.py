"""The options of opening files as virtual datasets and trees live in one place (``Opener``):
both openers take them, and refuse VirtualiZarr's, the same way."""

from __future__ import annotations

import pytest
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.xarray.open import Opener


@pytest.mark.parametrize("opener", [zms.open_virtual_dataset, zms.open_virtual_datatree])
def test_both_openers_refuse_virtualizarrs_parser_saying_what_to_write(tmp_path, opener):
    [path] = daily_files(tmp_path, (4,))
    with pytest.raises(TypeError, match=r"parser= is VirtualiZarr's option.*recognised"):
        opener(str(path), parser=object())


def test_keyword_options_are_split_into_the_openers_and_the_scanners():
    opener = Opener.of({"group": "a", "drop_variables": "t2m", "on_unsupported": "skip"})
    assert (opener.group, opener.dropped) == ("a", ["t2m"])
    assert opener.scan_options == {"on_unsupported": "skip"}
    assert Opener.of({}) == Opener()
