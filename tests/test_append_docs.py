"""docs/howto/growing-archive.md: every example runs and prints what the page shows."""

from __future__ import annotations

import pytest
from test_docs import Page, sample_folder, sample_template  # noqa: F401 - the page's fixtures


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_page_docs_howto_growing_archive(sample_folder, s3_server, monkeypatch):  # noqa: F811
    """The object storage example appends on the S3 test server, to a bucket of its own."""
    import s3fs

    client = s3_server.client()
    if "my-archive" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="my-archive")
    for path in sorted((sample_folder / "data").glob("era_*.nc")):
        client.upload_file(str(path), "my-archive", f"era5/{path.name}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        assert Page("docs/howto/growing-archive.md").run() >= 7
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key in client.list_objects_v2(Bucket="my-archive").get("Contents", []):
            client.delete_object(Bucket="my-archive", Key=key["Key"])
