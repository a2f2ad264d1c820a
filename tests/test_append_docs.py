"""docs/howto/growing-archive.md: every example runs and prints what the page shows."""

from __future__ import annotations

import pytest
from test_docs import Page, sample_folder, sample_template  # noqa: F401 - the page's fixtures


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_page_docs_howto_growing_archive(sample_folder):  # noqa: F811
    assert Page("docs/howto/growing-archive.md").run() >= 5
