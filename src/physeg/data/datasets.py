"""Folder datasets: images paired with ground-truth masks, and CLI input expansion.

Layouts understood
------------------
1. The shared-data layout ``<root>/manifest.csv`` + ``images/<id>.png|.jpg`` +
   ``masks/<id>.png`` (or BSDS500's ``masks/<id>_<k>.png``, one file per annotator k). The
   manifest's ``id``, ``image`` and ``masks`` columns (``masks``: ``;``-separated paths
   relative to the root) define the samples, in manifest order; every other column goes to
   :attr:`Sample.meta`, with numbers converted to ``int`` / ``float``.
2. ``<root>/images`` + ``<root>/masks`` without a manifest: paired by file stem, mask
   ``<stem>.<ext>`` or ``<stem>_<k>.<ext>`` (see :func:`pair_folders`).
3. Two unrelated folders (``physeg evaluate PRED GT``, ``physeg fit --images D --masks D``):
   :func:`pair_folders` directly, or ``FolderDataset(root, images=D1, masks=D2)``.

Choices made where the brief left room
--------------------------------------
* A manifest wins when present and the default ``images`` / ``masks`` names are used; giving
  other folder names ignores the manifest (the caller asked for those folders).
* Pairing by stem: an exact stem match wins over the ``<stem>_<k>`` annotator pattern, so an
  image ``a_1.png`` keeps its own mask ``a_1.png``. Annotators are ordered by ``k``
  numerically (``_2`` before ``_10``).
* Unmatched files are an error by default, listing up to 5 names per side; ``strict=False``
  drops them instead (for evaluating predictions of a subset against a full ground truth).
* File existence is checked when the dataset is built (cheap); image/mask sizes are checked
  when a sample is loaded (:meth:`Sample.load`, :func:`check_pair`) or for all samples at once
  with :meth:`FolderDataset.validate`, which reads only the file headers.
* :func:`split` returns both parts in their original order (a seeded permutation chooses the
  members), so reports list samples in a stable, readable order.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .._validate import as_rng, channel_axis_from_mask
from ..io import _spatial_shape, is_image_file, read_image, read_mask

__all__ = [
    "Sample",
    "FolderDataset",
    "check_pair",
    "pair_folders",
    "find_images",
    "load_pairs",
    "split",
    "data_root",
]

_ANNOTATOR = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_MAX_LISTED = 5


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def check_pair(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    image_path: Any = None,
    mask_path: Any = None,
) -> None:
    """Raise ``ValueError`` unless ``mask`` has the spatial shape of ``image``.

    The image may carry a trailing colour axis (3 or 4 channels) that the mask lacks.
    """
    img_shape = tuple(image.shape)
    spatial = img_shape[:-1] if channel_axis_from_mask(image, mask) is not None else img_shape
    if tuple(mask.shape) != spatial:
        where = f" ({image_path} vs {mask_path})" if image_path is not None else ""
        raise ValueError(
            f"image and mask sizes differ{where}: image shape {img_shape}, mask shape "
            f"{tuple(mask.shape)}. Each mask must have its image's rows x cols; re-export the "
            "mask at the image's size or fix the pairing."
        )


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image with its ground-truth mask files (one per annotator).

    Attributes
    ----------
    id : str
        Sample id (manifest ``id`` or the image file stem).
    image_path : pathlib.Path
        The image file.
    mask_paths : tuple of pathlib.Path
        Mask files, first annotator first; empty when no ground truth is known.
    meta : dict
        Extra manifest columns (numbers converted), empty for folder pairs.
    """

    id: str
    image_path: Path
    mask_paths: tuple[Path, ...] = ()
    meta: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def image(self) -> np.ndarray:
        """The image as stored (:func:`physeg.io.read_image`)."""
        return read_image(self.image_path)

    def masks(self) -> list[np.ndarray]:
        """All annotators' label images (:func:`physeg.io.read_mask`)."""
        return [read_mask(p) for p in self.mask_paths]

    def mask(self) -> np.ndarray:
        """The first annotator's label image."""
        if not self.mask_paths:
            raise ValueError(f"sample {self.id!r} ({self.image_path}) has no mask file.")
        return read_mask(self.mask_paths[0])

    def load(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Read the image and all masks, checking that every mask has the image's size."""
        image = self.image()
        masks = self.masks()
        for path, mask in zip(self.mask_paths, masks, strict=True):
            check_pair(image, mask, image_path=self.image_path, mask_path=path)
        return image, masks


def _stem_map(folder: Path, what: str) -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    stems: dict[str, Path] = {}
    dupes: list[str] = []
    for p in files:
        if p.stem in stems:
            dupes.append(f"{stems[p.stem].name} / {p.name}")
        stems[p.stem] = p
    if dupes:
        raise ValueError(
            f"{what} folder {folder} has several files with the same name stem: "
            f"{_listing(dupes)}; keep one file per stem."
        )
    return stems


def _check_dir(folder: Any, what: str) -> Path:
    p = Path(folder)
    if not p.exists():
        raise FileNotFoundError(f"{what} folder not found: {p}")
    if not p.is_dir():
        raise NotADirectoryError(f"{what} path {p} is not a folder.")
    return p


def pair_folders(images_dir: Any, masks_dir: Any, *, strict: bool = True) -> list[Sample]:
    """Pair the images of one folder with the masks of another by file stem.

    Parameters
    ----------
    images_dir, masks_dir : str or os.PathLike
        Folders (non-recursive; only image suffixes, hidden files skipped). A mask belongs to
        image ``<stem>.*`` when it is named ``<stem>.*`` or ``<stem>_<k>.*`` (annotator k).
    strict : bool, default True
        Raise when an image has no mask or a mask has no image (listing up to 5 names of
        each); ``False`` drops those files.

    Returns
    -------
    list of Sample
        Sorted by image stem; ``mask_paths`` ordered exact match first, then by k.
    """
    img_dir = _check_dir(images_dir, "images")
    msk_dir = _check_dir(masks_dir, "masks")
    images = _stem_map(img_dir, "images")
    if not images:
        raise ValueError(f"no image files ({', '.join(_suffixes())}) in {img_dir}.")
    found: dict[str, list[tuple[int, Path]]] = {}
    orphan_masks: list[str] = []
    for p in sorted(q for q in msk_dir.iterdir() if q.is_file() and is_image_file(q)):
        if p.stem in images:
            found.setdefault(p.stem, []).append((-1, p))
            continue
        m = _ANNOTATOR.match(p.stem)
        if m and m["stem"] in images:
            found.setdefault(m["stem"], []).append((int(m["k"]), p))
        else:
            orphan_masks.append(p.name)
    no_mask = [images[s].name for s in sorted(images) if s not in found]
    if not found and not orphan_masks:  # nothing to pair: skipping unmatched files won't help
        raise ValueError(
            f"no mask files ({', '.join(_suffixes())}) in {msk_dir}; a mask must be named like "
            "its image (<stem>.png or <stem>_<k>.png). Check the masks folder."
        )
    if strict and (no_mask or orphan_masks):
        parts = []
        if no_mask:
            parts.append(
                f"{len(no_mask)} image(s) in {img_dir} without a mask: {_listing(no_mask)}"
            )
        if orphan_masks:
            parts.append(
                f"{len(orphan_masks)} mask(s) in {msk_dir} without an image: "
                f"{_listing(orphan_masks)}"
            )
        raise ValueError(
            "cannot pair images with masks by name: "
            + "; ".join(parts)
            + ". A mask must be named like its image (<stem>.png or <stem>_<k>.png); rename or "
            "remove the extra files (or pass strict=False to skip them)."
        )
    return [
        Sample(id=s, image_path=images[s], mask_paths=tuple(p for _, p in sorted(found[s])))
        for s in sorted(found)
    ]


def _suffixes() -> tuple[str, ...]:
    from ..io import SUPPORTED_SUFFIXES

    return SUPPORTED_SUFFIXES


def _convert(value: str) -> Any:
    text = value.strip()
    for typ in (int, float):
        try:
            return typ(text)
        except ValueError:
            continue
    return value


def _read_manifest(root: Path) -> list[Sample]:
    path = root / "manifest.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        missing_cols = [c for c in ("id", "image", "masks") if c not in cols]
        if missing_cols:
            raise ValueError(
                f"{path} lacks the column(s) {missing_cols}; expected at least id, image, masks "
                f"(got {cols})."
            )
        rows = list(reader)
    samples: list[Sample] = []
    missing: list[str] = []
    seen: set[str] = set()
    for row in rows:
        sid = row["id"].strip()
        if sid in seen:
            raise ValueError(f"{path}: id {sid!r} appears more than once.")
        seen.add(sid)
        image = root / row["image"].strip()
        masks = tuple(root / m.strip() for m in (row["masks"] or "").split(";") if m.strip())
        for p in (image, *masks):
            if not p.is_file():
                missing.append(str(p.relative_to(root)))
        meta = {k: _convert(v) for k, v in row.items() if k not in ("id", "image", "masks")}
        samples.append(Sample(id=sid, image_path=image, mask_paths=masks, meta=meta))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} file(s) listed in {path} do not exist: {_listing(missing)}. "
            "Restore them, or fix the manifest (its paths are relative to the dataset folder)."
        )
    return samples


class FolderDataset:
    """A folder of images with ground-truth masks.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder; with ``manifest.csv`` it is read in the shared-data layout, otherwise
        ``images`` and ``masks`` are paired by stem.
    images, masks : str or os.PathLike, default "images", "masks"
        Sub-folder names (relative to ``root``) or absolute folders. Other than the defaults,
        the manifest is ignored.
    limit : int, optional
        Keep only the first ``limit`` samples (manifest order, else sorted by id); ``None``
        keeps all.

    Examples
    --------
    >>> ds = FolderDataset(data_root("weizmann_horse"), limit=3)  # doctest: +SKIP
    >>> image, masks = ds[0].load()  # doctest: +SKIP
    """

    def __init__(
        self,
        root: Any,
        *,
        images: Any = "images",
        masks: Any = "masks",
        limit: int | None = None,
    ) -> None:
        self.root = _check_dir(root, "dataset")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
                raise ValueError(f"limit must be None or an integer >= 0, got {limit!r}.")
        default = str(images) == "images" and str(masks) == "masks"
        if default and (self.root / "manifest.csv").is_file():
            samples = _read_manifest(self.root)
        else:
            img_dir = self.root / images
            msk_dir = self.root / masks
            if not img_dir.is_dir() and default:
                raise FileNotFoundError(
                    f"{self.root} is not a dataset folder: no manifest.csv and no "
                    f"'{images}/' sub-folder. Expected images/ and masks/ (paired by name)."
                )
            samples = pair_folders(img_dir, msk_dir)
        self.samples: list[Sample] = samples[:limit] if limit is not None else samples
        self._index = {s.id: i for i, s in enumerate(self.samples)}

    @property
    def name(self) -> str:
        """Folder name (e.g. ``"bsds500"``)."""
        return self.root.name

    @property
    def ids(self) -> list[str]:
        """Sample ids in dataset order."""
        return [s.id for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, key: int | str) -> Sample:
        """A sample by position (int, negatives allowed) or by id (str)."""
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"no sample with id {key!r} in {self.root}.")
            return self.samples[self._index[key]]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.samples[int(key)]
        raise TypeError(f"index a FolderDataset with an int or an id string, got {key!r}.")

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.root)!r}, {len(self)} samples)"

    def validate(self) -> None:
        """Check every image/mask size pair from the file headers; list all mismatches."""
        bad: list[str] = []
        for s in self.samples:
            shape = _spatial_shape(s.image_path)
            for m in s.mask_paths:
                mshape = _spatial_shape(m)
                if mshape != shape:
                    bad.append(f"{s.image_path.name} {shape} vs {m.name} {mshape}")
        if bad:
            raise ValueError(
                f"{len(bad)} image/mask pair(s) in {self.root} differ in size: {_listing(bad)}. "
                "Each mask must have its image's rows x cols; re-export those masks or fix "
                "the pairing."
            )


def find_images(inputs: Any) -> list[Path]:
    """Expand CLI inputs (files, folders, glob patterns) into image files.

    Parameters
    ----------
    inputs : str, os.PathLike or list of them
        A file (must have an image suffix), a folder (its image files, non-recursive,
        sorted by name, hidden files skipped) or a glob pattern (matching image files,
        sorted).

    Returns
    -------
    list of pathlib.Path
        In input order, duplicates removed.

    Raises
    ------
    FileNotFoundError
        An input that is neither a file, a folder nor a pattern matching something.
    ValueError
        A file with an unsupported suffix, a folder or pattern without image files, no inputs.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise ValueError("no inputs given; pass image files, folders or glob patterns.")
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and is_image_file(q))
            if not found:
                raise ValueError(
                    f"folder {text!r} holds no image files ({', '.join(_suffixes())})."
                )
        elif p.is_file():
            if not is_image_file(p):
                raise ValueError(
                    f"input {text!r} is not a supported image file; supported suffixes: "
                    f"{', '.join(_suffixes())}."
                )
            found = [p]
        elif _GLOB_CHARS.search(text):
            found = sorted(
                Path(q) for q in glob.glob(text) if Path(q).is_file() and is_image_file(q)
            )
            if not found:
                raise ValueError(f"pattern {text!r} matches no image files.")
        else:
            raise FileNotFoundError(f"input not found: {text!r} (not a file, folder or pattern).")
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


def load_pairs(samples: Iterable[Sample]) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Read every sample's image and first annotator's mask, as training data.

    Parameters
    ----------
    samples : iterable of Sample
        A :class:`FolderDataset`, the output of :func:`pair_folders` or a part of a
        :func:`split`.

    Returns
    -------
    ids : list of str
        The samples' ids, in the given order.
    images, masks : lists of numpy.ndarray
        As stored (:func:`physeg.io.read_image`, :func:`physeg.io.read_mask`); each mask has
        its image's spatial shape.

    Raises
    ------
    ValueError
        A sample without a mask file, or a mask whose size differs from its image's.
    """
    ids: list[str] = []
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for sample in samples:
        image, mask = sample.image(), sample.mask()
        check_pair(image, mask, image_path=sample.image_path, mask_path=sample.mask_paths[0])
        ids.append(sample.id)
        images.append(image)
        masks.append(mask)
    return ids, images, masks


def split(
    samples: Sequence[Any], n_train: int, *, rng: None | int | np.random.Generator
) -> tuple[list[Any], list[Any]]:
    """Split samples into a training and a test part with a seeded permutation.

    Parameters
    ----------
    samples : sequence
        Samples (or anything) to split.
    n_train : int
        Size of the training part, 0 <= n_train <= len(samples).
    rng : None, int or numpy.random.Generator
        Seed or generator; the same seed gives the same split, and with the same seed a
        larger ``n_train`` keeps every member of a smaller one (one permutation's prefix).

    Returns
    -------
    (train, test) : tuple of lists
        Both in the original order of ``samples``.
    """
    items = list(samples)
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
        raise TypeError(f"n_train must be an integer, got {n_train!r}.")
    if not 0 <= n_train <= len(items):
        raise ValueError(
            f"n_train={n_train} is out of range: there are {len(items)} samples, so use "
            f"0 <= n_train <= {len(items)}."
        )
    perm = as_rng(rng).permutation(len(items))
    train_idx = np.sort(perm[: int(n_train)])
    test_idx = np.sort(perm[int(n_train):])
    return [items[i] for i in train_idx], [items[i] for i in test_idx]


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def data_root(name: str | None = None) -> Path:
    """Folder of the shared datasets, or of one dataset in it.

    Looks at ``$PHYSEG_DATA`` (used alone when set), then ``../shared/data`` beside the
    repository, then ``../shared/data`` beside the current directory.

    Parameters
    ----------
    name : str, optional
        Dataset name (e.g. ``"bsds500"``); ``None`` returns the root.

    Raises
    ------
    FileNotFoundError
        No data folder found (message says how to point to one), or no dataset ``name``
        (message lists the available ones).
    """
    env = os.environ.get("PHYSEG_DATA")
    if env:
        root = Path(env)
        if not root.is_dir():
            raise FileNotFoundError(
                f"PHYSEG_DATA={env!r} is not a folder; point it to the datasets folder."
            )
    else:
        cands = [_repo_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
        found = [c for c in cands if c.is_dir()]
        if not found:
            raise FileNotFoundError(
                "no datasets folder found (looked in "
                + ", ".join(str(c) for c in cands)
                + "); set PHYSEG_DATA to the folder holding the datasets."
            )
        root = found[0]
    if name is None:
        return root
    path = root / name
    if not path.is_dir():
        avail = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(
            f"no dataset {name!r} in {root}; available: {', '.join(avail) or '(none)'}."
        )
    return path
