"""``python -m conformance IMPLEMENTATION [-k SUBSTRING] [-v]``: run the conformance cases.

IMPLEMENTATION is an adapter module name (``zarr_manifest_store`` runs this
package in process) or a command line following the protocol in README.md.
Exits 1 if any case fails; cases the implementation refuses as unsupported
(a valid document using a Zarr feature it lacks) are counted apart.
"""

from __future__ import annotations

import argparse
import sys

from conformance.runner import Result, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance", description=__doc__.splitlines()[0]
    )
    parser.add_argument("implementation", help="adapter module name, or adapter command line")
    parser.add_argument(
        "-k", dest="pattern", default="", help="only cases whose name contains this"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list every case")
    parser.add_argument(
        "-j", dest="jobs", type=int, default=1, help="cases run at once (adapter commands only)"
    )
    args = parser.parse_args()
    results = run(args.implementation, lambda name: args.pattern in name, jobs=args.jobs)
    for r in results:
        if args.verbose or not r.passed:
            print(f"{r.outcome:<11}  {r.case}{'  ' + r.detail if r.detail else ''}")
    print(summary(results))
    return 1 if any(r.failed for r in results) or not results else 0


def summary(results: list[Result]) -> str:
    """``N passed, N failed, N unsupported, of N cases``."""
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    unsupported = sum(r.unsupported for r in results)
    return f"{passed} passed, {failed} failed, {unsupported} unsupported, of {len(results)} cases"


if __name__ == "__main__":
    sys.exit(main())
