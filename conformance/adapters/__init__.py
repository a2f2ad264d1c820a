"""Adapters: how the runner drives an implementation (see ``conformance/README.md``)."""
