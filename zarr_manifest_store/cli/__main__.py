"""``python -m zarr_manifest_store.cli ARGS``: the ``zarr-manifest`` command line (``make demo`` runs it)."""

import sys

from zarr_manifest_store.cli import main

if __name__ == "__main__":
    sys.exit(main())
