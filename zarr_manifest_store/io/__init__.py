"""Reading bytes of source files: paths, the allow-list, fingerprints, local and remote reads."""
