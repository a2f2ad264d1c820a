"""The compiled part of the package (zarr_manifest_store/_speedups.c): the steps of a read.

It is optional: without a C compiler the package installs as pure Python,
whose twins of those steps give the same answers, a few microseconds slower.
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zarr_manifest_store._speedups",
            sources=["zarr_manifest_store/_speedups.c"],
            include_dirs=[numpy.get_include()],
            optional=True,
        )
    ]
)
