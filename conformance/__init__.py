"""The language-neutral conformance suite of the chunk-manifest extension (see README.md)."""
