"""Reading and writing images, label masks, volumes and logs, safely.

Formats
-------
``.png``, ``.jpg``/``.jpeg`` and ``.bmp`` go through ``imageio.v3`` with the Pillow plugin
(named explicitly, so a corrupt file never falls through to some other backend);
``.tif``/``.tiff`` go through ``tifffile``. The file's suffix chooses the library; Pillow then
recognises the actual format from the contents, so a PNG misnamed ``.jpg`` still reads
(losslessly), while a file Pillow cannot decode is reported as corrupt.

Arrays come back exactly as stored, never rescaled (design: "no silent rescaling"):

* 2D grey ``(rows, cols)``; with channels ``(rows, cols, C)``: RGB, RGBA, grey+alpha
  (``C = 2``), or a TIFF with ``C`` samples per pixel (:func:`read_image_and_axis` says
  which, so the colour policy never takes such a file for a volume);
* 16-bit grey PNG stays ``uint16``;
* a multi-page TIFF (or a TIFF written as a 3D array) is a volume ``(planes, rows, cols[, C])``.
* **Size limit.** The size a file declares is checked before decoding: more than
  ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, 100 million; voxels for a volume) is an
  :class:`ImageTooLargeError` that names the fix (``--max-pixels``, or
  :mod:`physeg.families.heat.blockwise`), never "corrupt" or a ``MemoryError``.

Safety rules for every write (the CLI relies on them; :mod:`physeg.io._write`)
-------------------------------------------------------------------------------
* **Atomic**: the file is encoded in memory, written to a hidden temporary file in the target
  folder (``.<name>.<host>-<pid>-<random>.physeg-tmp``), flushed with ``fsync`` and moved into
  place. A failed write leaves no temporary file behind and an existing output untouched.
* **No clobber at write time**: without ``overwrite`` the move is ``os.link`` (or an
  ``O_EXCL`` claim of the name where there are no hard links), so an output that appeared
  meanwhile (a concurrent run) is reported ("appeared meanwhile"), never replaced.
* **Never an input**: ``protect`` lists the input paths; writing to any of them (same resolved
  path, or the same file through a link) raises :class:`ProtectedPathError` even with
  ``overwrite=True``. Labels, overlays, models, reports and logs all take this check
  (:func:`check_writable`, :class:`AppendLog`).
* **Stale temporary files**: :func:`remove_stale_temps` deletes only those of writers on this
  host that have exited (a killed process), never a running writer's.
* **Clear failures**: an OS error becomes one line (:class:`OutputError`, and
  :class:`DiskFullError` for ``ENOSPC``) naming the path, the reason and the fix.
* Parent folders are created. An existing output is replaced only with ``overwrite=True``.
* **The log** (:class:`AppendLog`): JSON lines, each written whole under a lock and fsynced; a
  write that fails part-way is cut back, so the file never ends in a torn line.

Choices made where the brief left room
--------------------------------------
* Label images: ``.png`` (2D, uint8 when the largest label is <= 255, else uint16, up to
  65535) or ``.tif``/``.tiff`` (2D or 3D; the smallest of uint8/uint16/uint32, zlib
  compressed). JPEG is refused because it is lossy; BMP is refused because Pillow's 8-bit
  BMP is palette based and 16-bit BMP is not portable, so labels could come back changed.
* ``read_mask`` accepts a colour mask only when all colour channels are equal (grey stored as
  RGB); an alpha channel (the last of 2 or 4) is accepted only if it is constant, and is then
  dropped. Palette ("P" mode) PNG masks are read as their palette *indices*, which is how
  VOC-style label PNGs store labels. Integer-valued float masks (e.g. float32 TIFF) are
  converted to the smallest unsigned dtype; any fractional value is an error.
* Provenance: ``write_labels(..., provenance=dict)`` stores the dict as JSON in the PNG
  ``tEXt`` chunk / TIFF ``ImageDescription`` under the key ``physeg``; it is written with the
  pixels, so a label file and its provenance appear together or not at all
  (:func:`read_provenance`).
* 16-bit colour PNGs are refused on read and write with a hint to use TIFF: Pillow reduces
  them to 8 bits, which would silently change the data.
* ``is_image_file`` looks at the suffix only and skips hidden names (``.x.png``, including the
  temporary files of this module and macOS ``._`` files).
"""

from __future__ import annotations

from ._common import (
    DEFAULT_MAX_PIXELS,
    LABEL_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TEMP_SUFFIX,
    DiskFullError,
    ImageTooLargeError,
    OutputError,
    ProtectedPathError,
    is_disk_full,
    resolve,
)
from ._log import AppendLog, check_log, read_log
from ._read import _spatial_shape as _spatial_shape  # for physeg.data.datasets
from ._read import (
    check_max_pixels,
    file_sha256,
    is_image_file,
    output_path_for,
    read_image,
    read_image_and_axis,
    read_mask,
    read_provenance,
)
from ._write import (
    InputSet,
    atomic_write_bytes,
    check_writable,
    prepare_folder,
    remove_stale_temps,
    same_file,
    write_image,
    write_labels,
)

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LABEL_SUFFIXES",
    "TEMP_SUFFIX",
    "DEFAULT_MAX_PIXELS",
    "ProtectedPathError",
    "OutputError",
    "DiskFullError",
    "ImageTooLargeError",
    "AppendLog",
    "InputSet",
    "check_log",
    "read_log",
    "is_image_file",
    "is_disk_full",
    "check_max_pixels",
    "read_image",
    "read_image_and_axis",
    "read_mask",
    "write_labels",
    "write_image",
    "atomic_write_bytes",
    "check_writable",
    "prepare_folder",
    "same_file",
    "resolve",
    "remove_stale_temps",
    "read_provenance",
    "file_sha256",
    "output_path_for",
]

