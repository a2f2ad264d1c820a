"""docs/howto/from-virtualizarr.md: every VirtualiZarr 2.x call in its table, run."""

from __future__ import annotations

import pytest
from test_docs import Page, sample_folder, sample_template  # noqa: F401 - the fixtures


@pytest.mark.usefixtures("sample_folder")
def test_page_docs_howto_from_virtualizarr():
    assert Page("docs/howto/from-virtualizarr.md").run() == 7
