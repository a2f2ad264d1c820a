"""``python -m conformance IMPLEMENTATION [-k SUBSTRING] [-v]``: run the conformance cases.

IMPLEMENTATION is an adapter module name (``zarr_manifest_store`` runs this
package in process) or a command line following the protocol in README.md.
Exits 1 if any case fails.
"""

from __future__ import annotations

import argparse
import sys

from conformance.runner import run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance", description=__doc__.splitlines()[0]
    )
    parser.add_argument("implementation", help="adapter module name, or adapter command line")
    parser.add_argument(
        "-k", dest="pattern", default="", help="only cases whose name contains this"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list every case")
    args = parser.parse_args()
    results = run(args.implementation, lambda name: args.pattern in name)
    for r in results:
        if args.verbose or not r.passed:
            print(
                f"{'PASS' if r.passed else 'FAIL'}  {r.case}{'  ' + r.detail if r.detail else ''}"
            )
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed, of {len(results)} cases")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
