"""Scanners: build a ManifestGroup from archival files without copying their data."""
