"""The Zarr v3 codecs of the formats zarr lacks a codec for, each decoding within its chunk's size.

- ``zarr_manifest_store.tiff_segment`` (:mod:`.tiff`): one TIFF strip or tile;
- ``zarr_manifest_store.fits_rice_1`` (:mod:`.rice`): a FITS ``RICE_1`` tile;
- ``zarr_manifest_store.grib`` (:mod:`.grib`, framing in :mod:`.grib_sections`): one
  GRIB2 message;
- ``zarr_manifest_store.hdf5_lzf``, ``hdf5_lz4``, ``hdf5_bitshuffle``
  (:mod:`.hdf5_filters`): chunks of HDF5's LZF, LZ4 and bitshuffle filters.

zarr finds each through the package's ``zarr.codecs`` entry points, under the name
documents give it, and imports its module when a document first names it, so plain
zarr-python reads such documents too. No codec library is imported with the package:
the HDF5 scanner imports :mod:`.hdf5_filters` (and the GRIB scanner
:mod:`.grib_sections`) for the names and checks, and imagecodecs is imported when a
chunk is first decoded.
"""
