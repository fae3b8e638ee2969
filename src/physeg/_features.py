r"""Learned pixel likelihoods: multiscale features, a random forest, and safe model arrays.

Shared by the few-label fits of ``heat`` (fidelity :math:`-\log p(k\mid x)` regularised by
threshold dynamics) and ``kinetic`` (the posterior as the particles' feature), which may not
import each other.

Features (:func:`pixel_features`), float32 (*spatial, F), 2D or 3D
    Intensities: integers divided by their dtype's maximum, floats as they are (RGB expected
    in [0, 1]); no per-image stretch, so training and new images share one scale.
    For RGB(A) images CIELAB (L*/100, a*/100, b*/100; perceptually uniform, so one scale fits
    all hues; a grey image stored as RGB has a* = b* = 0, so one model serves a folder of grey
    and colour micrographs); for grey arrays the intensity; other channel counts: each
    channel. On the lightness (every channel of a non-RGB image): the value, its per-image
    standardised value :math:`(f-\mathrm{median})/\mathrm{std}` (exposure changes between
    images), and at each scale :math:`s\in` ``SIGMAS`` = 1, 2, 4, 8 pixels the Gaussian
    smoothing :math:`G_s*f`, the gradient magnitude :math:`s|\nabla G_s*f|`, the local
    standard deviation :math:`\sqrt{G_s*f^2-(G_s*f)^2}` (texture) and the scale-normalised
    Laplacian :math:`s^2\Delta(G_s*f)` (blobs, ridges); on a*, b* the value and its smoothings.
    Optionally (``border=True``, the default) the contrast-weighted geodesic distance from the
    image border (:func:`physeg._regions.border_geodesic`), the object prior of the no-label
    model, as one more feature: the classifier learns how much to trust it. The bank is
    scikit-image's ``multiscale_basic_features`` in spirit (intensity, edges, texture at
    several scales), written with separable filters so that a 512² colour image takes about
    0.3 s instead of 3 s (its Hessian eigenvalues dominate).
Classifier (:class:`Forest`)
    scikit-learn's random forest (``trees`` trees, depth ≤ ``depth``, ≥ 5 pixels per leaf),
    trained on at most ``samples`` pixels drawn per class and image, so training does not grow
    with the image size; chosen against logistic regression and gradient boosting by an
    exploratory measurement (the numbers: ``docs/methods/heat.md``, "learned fidelity").
Model arrays (:meth:`Forest.to_state`, :meth:`Forest.from_state`)
    The trees are kept as plain arrays (children, feature, threshold, class fractions per node)
    and written as base64 little-endian bytes with dtype and shape in the JSON model file; no
    pickle. Loading checks every array (dtype, shape, children after their parent and inside the
    tree, features inside the feature count, fractions in [0, 1]) before scikit-learn's tree
    evaluator is rebuilt from them, so a tampered file is refused in one line and can neither
    run code nor index out of bounds. The fitted model predicts through the same rebuilt
    evaluator, so a loaded model gives byte-identical labels.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Sequence

import numpy as np

from ._validate import to_float01

__all__ = ["SIGMAS", "LEARN_PARAM_SPECS", "pixel_features", "mixture_features", "class_values",
           "sample_pixels", "Forest", "TrainingRows", "LearnedLikelihood", "encode_array",
           "decode_array"]

#: scales (pixels) of the feature bank
SIGMAS = (1.0, 2.0, 4.0, 8.0)
#: defaults of the learned likelihood: pixels drawn per class and image, trees, depth
SAMPLES = 2000
TREES = 32
DEPTH = 12
MIN_LEAF = 5
MAX_FEATURES = "sqrt"  # features tried per split (scikit-learn's default for classifiers)
_CHUNK = 1 << 17  # pixels per forest evaluation (bounds the memory of large volumes)

Progress = Callable[[int, "int | None", str], None]

#: the learned likelihood's fit parameters, one definition for every family that offers it
#: (``Param(**spec)``; families build their schema from these, so ranges cannot drift apart)
LEARN_PARAM_SPECS: tuple[dict[str, Any], ...] = (
    dict(name="unlabelled", type="int", default=None, low=0, high=2**31 - 1,
         help="mask value meaning 'no label' (scribbles); classes are the other values in "
              "increasing order, label k = the k-th"),
    dict(name="samples", type="int", default=SAMPLES, low=10, high=10**7,
         help="pixels drawn per class and training image; more = slower, finer likelihoods"),
    dict(name="trees", type="int", default=TREES, low=1, high=500,
         help="trees of the random forest; more = smoother posteriors, slower prediction"),
    dict(name="depth", type="int", default=DEPTH, low=1, high=40,
         help="depth limit of each tree; deeper = more detail, more over-fitting of few labels"),
    dict(name="border_feature", type="bool", default=True,
         help="add the border geodesic distance (the no-label object prior) as a feature"),
)


# ---- features ------------------------------------------------------------------------------


def _bank(f: np.ndarray, sigmas: Sequence[float], full: bool) -> list[np.ndarray]:
    from scipy import ndimage as ndi

    out = [f]
    if full:
        sd = float(f.std())
        out.append((f - float(np.median(f))) / (sd if sd > 0 else 1.0))
        f2 = f * f
    for s in sigmas:
        g = ndi.gaussian_filter(f, s, truncate=3.0)
        out.append(g)
        if full:
            grads = np.gradient(g) if g.ndim > 1 else [np.gradient(g)]
            out.append(np.sqrt(sum(d * d for d in grads)) * np.float32(s))
            out.append(np.sqrt(np.maximum(ndi.gaussian_filter(f2, s, truncate=3.0) - g * g, 0)))
            out.append(ndi.laplace(g) * np.float32(s * s))
    return out


def _scaled(arr: np.ndarray) -> np.ndarray:
    """float32 intensities on one scale for every image: integers by their dtype's range,
    floats as they are (no per-image stretch, which would give training and new images
    different units)."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return to_float01(arr).astype(np.float32)
    return arr.astype(np.float32)


def _channels(image: np.ndarray, channel_axis: int | None) -> tuple[list[np.ndarray], list[bool]]:
    """Base channels (float32) and which get the full bank (lightness / grey: True)."""
    arr = np.asarray(image)
    if channel_axis is None:
        return [_scaled(arr)], [True]
    if arr.shape[-1] in (3, 4):  # RGB(A); a grey image stored as RGB has a* = b* = 0
        from skimage.color import rgb2lab

        rgb = np.clip(_scaled(arr[..., :3]), 0.0, 1.0)
        lab = (rgb2lab(rgb) / 100.0).astype(np.float32)
        return [np.ascontiguousarray(lab[..., c]) for c in range(3)], [True, False, False]
    f = _scaled(arr)
    return [np.ascontiguousarray(f[..., c], dtype=np.float32) for c in range(arr.shape[-1])], \
        [True] * arr.shape[-1]


def _border(stack: np.ndarray) -> np.ndarray:
    """The border geodesic distance; images above ``2**17`` pixels on every second pixel,
    linearly interpolated back (the distance is smooth; the minimal-path search is the
    costliest feature)."""
    from scipy import ndimage as ndi

    from ._regions import border_geodesic

    spatial = stack.shape[:-1]
    if not np.ptp(stack) > 0:
        return np.zeros(spatial, np.float32)
    if int(np.prod(spatial)) <= 1 << 17:
        return border_geodesic(stack)
    coarse = border_geodesic(stack[(slice(None, None, 2),) * len(spatial)])
    zoom = [n / c for n, c in zip(spatial, coarse.shape, strict=True)]
    out = ndi.zoom(coarse, zoom, order=1, grid_mode=True, mode="nearest")
    return out[tuple(slice(0, n) for n in spatial)].astype(np.float32)


def pixel_features(image: np.ndarray, channel_axis: int | None, *,
                   sigmas: Sequence[float] = SIGMAS, border: bool = True,
                   extra: np.ndarray | None = None) -> np.ndarray:
    """float32 features (*spatial, F) of a 2D/3D grey or colour image (see the module notes).

    ``channel_axis`` is -1 or None (as after :func:`physeg._validate.check_image`). The number
    and order of features depend only on the channel layout (colour, grey, C channels), the
    ``sigmas`` and ``border``; ``extra`` (*spatial, e), channels computed by the caller, come
    last. A view of a feature-major (F, *spatial) block (interleaving the planes into the last
    axis cost 0.1 of 0.35 s on a 512² colour image; the forest reads both at the same speed).
    """
    chans, full = _channels(image, channel_axis)
    feats: list[np.ndarray] = []
    for f, is_full in zip(chans, full, strict=True):
        feats += _bank(f, sigmas, is_full)
    if border:
        feats.append(_border(np.stack([10.0 * c for c in chans], axis=-1)))
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float32)
        if extra.shape[:-1] != feats[0].shape:
            raise ValueError(f"extra features of shape {extra.shape} for an image of spatial "
                             f"shape {feats[0].shape}")
        feats += [extra[..., j] for j in range(extra.shape[-1])]
    block = np.stack([np.asarray(g, dtype=np.float32) for g in feats], axis=0)
    return np.moveaxis(block, 0, -1)


def mixture_features(F: np.ndarray, lay: str, sigmas: Sequence[float]) -> np.ndarray:
    """Columns of ``F`` for a per-image colour model: the base channels and the local standard
    deviation of each full-bank channel at the scale nearest 2 px, times 10 (CIELAB / 10, as
    :func:`physeg._regions.region_features`)."""
    n = len(sigmas)
    j = int(np.argmin([abs(s - 2.0) for s in sigmas])) if n else None
    full, light = 2 + 4 * n, 1 + n
    if lay == "colour":
        cols = [0, full, full + light] + ([] if j is None else [4 + 4 * j])
    else:
        c = 1 if lay == "grey" else int(lay[1:])
        cols = [k * full for k in range(c)] + ([] if j is None else
                                               [k * full + 4 + 4 * j for k in range(c)])
    return 10.0 * F[..., cols]


def layout(image: np.ndarray, channel_axis: int | None) -> str:
    """The channel layout a model's features were made for: ``grey``, ``colour`` (RGB(A), also
    a grey image stored as RGB, as a folder of mixed micrographs holds) or ``C<n>``."""
    arr = np.asarray(image)
    if channel_axis is None:
        return "grey"
    if arr.shape[-1] in (3, 4):
        return "colour"
    return f"C{arr.shape[-1]}"


# ---- labels and sampling -------------------------------------------------------------------


def class_values(masks: Sequence[np.ndarray], unlabelled: int | None) -> np.ndarray:
    """Sorted distinct mask values other than ``unlabelled``: class k is ``values[k]``."""
    vals = np.unique(np.concatenate([np.unique(np.asarray(m)) for m in masks]))
    if unlabelled is not None:
        vals = vals[vals != unlabelled]
    if vals.size < 2:
        what = "labelled value" if unlabelled is not None else "value"
        raise ValueError(
            f"the masks hold {vals.size} {what}(s) {vals.tolist()}; learning needs at least two "
            "classes" + (f" besides unlabelled={unlabelled}" if unlabelled is not None else "")
            + " (draw strokes of every class)."
        )
    if vals.size > 64:
        raise ValueError(f"the masks hold {vals.size} distinct values; at most 64 classes "
                         "(an instance mask? pass mask > 0 for object vs background).")
    return vals


def sample_pixels(features: np.ndarray, classes: np.ndarray, per_class: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """At most ``per_class`` pixels of every class (class -1 = unlabelled, never drawn)."""
    flat = classes.reshape(-1)
    X = features.reshape(-1, features.shape[-1])
    rows, ys = [], []
    for k in np.unique(flat):
        if k < 0:
            continue
        idx = np.flatnonzero(flat == k)
        if idx.size > per_class:
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        rows.append(X[idx])
        ys.append(np.full(idx.size, k, dtype=np.intp))
    return np.concatenate(rows), np.concatenate(ys)


# ---- safe arrays ---------------------------------------------------------------------------

_DTYPES = ("<i4", "<f8", "<f4")


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """``{"dtype", "shape", "data"}``: the array's little-endian bytes in base64 (no pickle)."""
    a = np.ascontiguousarray(a)
    dt = a.dtype.newbyteorder("<")
    if dt.str not in _DTYPES:
        raise TypeError(f"cannot store dtype {a.dtype}")  # pragma: no cover - our own arrays
    return {"dtype": dt.str, "shape": list(a.shape),
            "data": base64.b64encode(a.astype(dt, copy=False).tobytes()).decode("ascii")}


def decode_array(obj: Any, name: str) -> np.ndarray:
    """The array of :func:`encode_array`; ``ValueError`` naming ``name`` for anything else."""
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise ValueError(f"array {name!r} is not a {{dtype, shape, data}} entry")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if dtype not in _DTYPES:
        raise ValueError(f"array {name!r} has dtype {dtype!r}; allowed {list(_DTYPES)}")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise ValueError(f"array {name!r} has a bad shape {shape!r}")
    if not isinstance(data, str):
        raise ValueError(f"array {name!r} has no base64 data")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError(f"array {name!r} is not valid base64") from None
    dt = np.dtype(dtype)
    if len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
        raise ValueError(f"array {name!r} holds {len(raw)} bytes, not shape {shape} of {dtype}")
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


# ---- the forest ----------------------------------------------------------------------------


class Forest:
    """A random forest as plain arrays, evaluated by scikit-learn's tree code.

    ``left``, ``right`` (int32, -1 at leaves), ``feature`` (int32), ``threshold`` (float64),
    ``value`` (float64, class fractions per node, shape (nodes, K)) are the concatenated nodes
    of all trees; ``offsets`` (int32, trees + 1) delimit the trees. Go left when
    ``x[feature] <= threshold`` (x in float32, as scikit-learn compares).
    """

    def __init__(self, arrays: dict[str, np.ndarray], n_features: int, n_classes: int):
        self.arrays = arrays
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self._check()
        self._trees = self._build()

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, n_classes: int, *, trees: int = TREES,
            depth: int = DEPTH, rng: np.random.Generator) -> "Forest":
        """Train on rows ``X`` (float32) with classes ``y`` in 0..n_classes-1."""
        from sklearn.ensemble import RandomForestClassifier

        rf = RandomForestClassifier(n_estimators=trees, max_depth=depth,
                                    min_samples_leaf=MIN_LEAF, n_jobs=1,
                                    max_features=MAX_FEATURES,
                                    random_state=int(rng.integers(2**31 - 1)))
        rf.fit(X, y)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                              ("left", "right", "feature", "threshold", "value")}
        offsets = [0]
        for est in rf.estimators_:
            t = est.tree_
            val = np.zeros((t.node_count, n_classes))
            v = t.value[:, 0, :]
            val[:, est.classes_.astype(np.intp)] = v / np.maximum(v.sum(axis=1, keepdims=True),
                                                                    1e-300)
            parts["left"].append(t.children_left.astype(np.int32))
            parts["right"].append(t.children_right.astype(np.int32))
            parts["feature"].append(np.where(t.children_left < 0, -2, t.feature)
                                    .astype(np.int32))
            parts["threshold"].append(t.threshold.astype(np.float64))
            parts["value"].append(val)
            offsets.append(offsets[-1] + t.node_count)
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        arrays["offsets"] = np.asarray(offsets, np.int32)
        return cls(arrays, X.shape[1], n_classes)

    def _check(self) -> None:
        a = self.arrays
        names = ("left", "right", "feature", "threshold", "value", "offsets")
        missing = [n for n in names if n not in a]
        if missing:
            raise ValueError(f"the forest lacks arrays {missing}")
        off = a["offsets"]
        if off.ndim != 1 or off.size < 2 or off[0] != 0 or np.any(np.diff(off) < 1):
            raise ValueError("the forest's tree offsets are not increasing from 0")
        n = int(off[-1])
        for k in ("left", "right", "feature", "threshold"):
            if a[k].shape != (n,):
                raise ValueError(f"forest array {k!r} has shape {a[k].shape}, expected ({n},)")
        if a["value"].shape != (n, self.n_classes):
            raise ValueError(f"forest values have shape {a['value'].shape}, expected "
                             f"({n}, {self.n_classes})")
        tree_of = np.repeat(np.arange(off.size - 1), np.diff(off))
        start, stop = off[:-1][tree_of], off[1:][tree_of]
        node = np.arange(n)
        leaf = a["left"] < 0
        if np.any(leaf != (a["right"] < 0)) or np.any(a["left"][leaf] != -1) or \
                np.any(a["right"][leaf] != -1):
            raise ValueError("a forest node has exactly one child (or a child index below -1)")
        inner = ~leaf
        for k in ("left", "right"):  # children come after their parent, inside its tree
            child = a[k][inner] + start[inner]
            if np.any(child <= node[inner]) or np.any(child >= stop[inner]):
                raise ValueError(f"a forest node's {k} child lies outside its tree")
        if np.any(a["feature"][inner] < 0) or np.any(a["feature"][inner] >= self.n_features):
            raise ValueError(f"a forest node splits on a feature outside 0..{self.n_features - 1}")
        if not np.all(np.isfinite(a["threshold"][inner])):
            raise ValueError("a forest threshold is not finite")
        v = a["value"]
        if not np.all(np.isfinite(v)) or v.min() < 0 or v.max() > 1:
            raise ValueError("forest class fractions must lie in [0, 1]")

    def _build(self) -> list[Any]:
        """scikit-learn ``Tree`` objects rebuilt from the checked arrays (no pickle)."""
        from sklearn.tree._tree import Tree

        a = self.arrays
        template = _node_dtype()
        out = []
        n_classes = np.array([self.n_classes], dtype=np.intp)
        for t0, t1 in zip(a["offsets"][:-1], a["offsets"][1:], strict=True):
            m = int(t1 - t0)
            nodes = np.zeros(m, dtype=template)
            nodes["left_child"] = a["left"][t0:t1]
            nodes["right_child"] = a["right"][t0:t1]
            nodes["feature"] = a["feature"][t0:t1]
            nodes["threshold"] = a["threshold"][t0:t1]
            nodes["n_node_samples"] = 1
            nodes["weighted_n_node_samples"] = 1.0
            depth = _depth(a["left"][t0:t1], a["right"][t0:t1])
            tree = Tree(self.n_features, n_classes, 1)
            tree.__setstate__({"max_depth": depth, "node_count": m, "nodes": nodes,
                               "values": np.ascontiguousarray(
                                   a["value"][t0:t1].reshape(m, 1, self.n_classes))})
            out.append(tree)
        return out

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Mean class fractions over the trees, (rows, K) float64."""
        X = np.asarray(X, dtype=np.float32)  # any strides: a feature-major view is not copied
        out = np.zeros((X.shape[0], self.n_classes))
        for i in range(0, X.shape[0], _CHUNK):
            block = X[i:i + _CHUNK]
            acc = out[i:i + _CHUNK]
            for tree in self._trees:
                acc += tree.predict(block).reshape(block.shape[0], -1)
        out /= len(self._trees)
        return out

    def to_state(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "n_classes": self.n_classes,
                **{k: encode_array(v) for k, v in self.arrays.items()}}

    @classmethod
    def from_state(cls, state: Any) -> "Forest":
        if not isinstance(state, dict):
            raise ValueError("the forest entry is not a dict")
        nf, nc = state.get("n_features"), state.get("n_classes")
        if not (isinstance(nf, int) and nf > 0 and isinstance(nc, int) and 2 <= nc <= 64):
            raise ValueError("the forest's n_features / n_classes are missing or out of range")
        names = ("left", "right", "feature", "offsets")
        arrays = {k: decode_array(state.get(k), k) for k in names}
        for k in names:
            if arrays[k].dtype != np.int32:
                raise ValueError(f"forest array {k!r} must be int32")
        for k in ("threshold", "value"):
            arrays[k] = decode_array(state.get(k), k)
            if arrays[k].dtype != np.float64:
                raise ValueError(f"forest array {k!r} must be float64")
        return cls(arrays, nf, nc)


def _node_dtype() -> np.dtype:
    """The node record of this scikit-learn's trees (read off a one-split tree)."""
    from sklearn.tree import DecisionTreeClassifier

    tiny = DecisionTreeClassifier(max_depth=1).fit(np.array([[0.0], [1.0]]), [0, 1])
    return tiny.tree_.__getstate__()["nodes"].dtype


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    depth = np.zeros(left.size, np.int64)
    for i in range(left.size):  # children come after parents: one forward pass
        if left[i] >= 0:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
    return int(depth.max())


# ---- the learned likelihood ----------------------------------------------------------------


class TrainingRows:
    """The sampled training pixels of every image: ``X[i]`` (rows, F) float32, ``y[i]`` classes,
    and the class ``values``, ``layout``, ``ndim``, ``border``, ``n_extra`` they were made with;
    ``classes[i]`` is image i's class map (-1 = unlabelled)."""

    def __init__(self, X, y, classes, values, layout, ndim, border, n_extra):
        self.X, self.y, self.classes, self.values = X, y, classes, values
        self.layout, self.ndim, self.border, self.n_extra = layout, ndim, border, n_extra

    @classmethod
    def sample(cls, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
               channel_axes: Sequence[int | None], *, unlabelled: int | None, samples: int,
               border: bool, rng: np.random.Generator, progress: Progress | None = None,
               extras: Sequence[np.ndarray] | None = None) -> "TrainingRows":
        values, n = class_values(masks, unlabelled), len(images)
        Xs, ys, cls_maps, lay, nd = [], [], [], None, None
        for i, (img, msk, ca) in enumerate(zip(images, masks, channel_axes, strict=True)):
            this = layout(img, ca)
            spatial_nd = np.ndim(img) - (ca is not None)
            if lay is None:
                lay, nd = this, spatial_nd
            elif this != lay or spatial_nd != nd:
                raise ValueError(f"images[{i}] is {this} {spatial_nd}D but images[0] is {lay} "
                                 f"{nd}D; one model learns one kind of image.")
            m = np.asarray(msk)
            c = np.minimum(np.searchsorted(values, m), values.size - 1)
            cls_img = np.where(values[c] == m, c, -1)  # -1: unlabelled (or any other value)
            if progress is not None:
                progress(i, n + 1, f"features of training image {i + 1}/{n}")
            F = pixel_features(img, ca, border=border,
                               extra=None if extras is None else extras[i])
            X, y = sample_pixels(F, cls_img, samples, rng)
            Xs, ys, cls_maps = [*Xs, X], [*ys, y], [*cls_maps, cls_img]
        n_extra = 0 if extras is None else int(np.shape(extras[0])[-1])
        return cls(Xs, ys, cls_maps, values, lay, nd, bool(border), n_extra)


class LearnedLikelihood:
    """Features + forest: ``log_proba(image)`` gives :math:`\\log p(k\\mid x)` per pixel.

    ``values`` are the mask values of the classes (class k = ``values[k]`` in the training
    masks; it is label k of the output); ``layout`` the channel layout the features expect.
    """

    def __init__(self, forest: Forest, values: np.ndarray, layout: str, ndim: int,
                 border: bool = True, sigmas: Sequence[float] = SIGMAS, n_extra: int = 0):
        self.n_extra = int(n_extra)
        self.forest = forest
        self.values = np.asarray(values, dtype=np.int64)
        self.layout = layout
        self.ndim = int(ndim)
        self.border = bool(border)
        self.sigmas = tuple(float(s) for s in sigmas)

    @classmethod
    def fit(cls, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
            channel_axes: Sequence[int | None], *, unlabelled: int | None, samples: int,
            trees: int, depth: int, border: bool, rng: np.random.Generator,
            progress: Progress | None = None,
            extras: Sequence[np.ndarray] | None = None) -> "LearnedLikelihood":
        """Features of every image, ``samples`` pixels per class and image, one forest.
        ``extras``: per image, more feature channels (*spatial, e) computed by the caller (the
        same ``e`` for every image; ``log_proba`` then needs them too), appended last."""
        rows = TrainingRows.sample(images, masks, channel_axes, unlabelled=unlabelled,
                                   samples=samples, border=border, rng=rng, progress=progress,
                                   extras=extras)
        if progress is not None:
            progress(len(images), len(images) + 1, "random forest")
        return cls.from_rows(rows, range(len(images)), trees=trees, depth=depth, rng=rng)

    @classmethod
    def from_rows(cls, rows: "TrainingRows", which: Sequence[int], *, trees: int, depth: int,
                  rng: np.random.Generator) -> "LearnedLikelihood":
        """One forest on the sampled rows of the training images ``which`` (a cross-validation
        fold trains on a subset without computing any feature again)."""
        X = np.concatenate([rows.X[i] for i in which])
        y = np.concatenate([rows.y[i] for i in which])
        forest = Forest.fit(X, y, rows.values.size, trees=trees, depth=depth, rng=rng)
        return cls(forest, rows.values, rows.layout, rows.ndim, border=rows.border,
                   n_extra=rows.n_extra)

    def check(self, image: np.ndarray, channel_axis: int | None) -> None:
        this = layout(image, channel_axis)
        nd = np.ndim(image) - (channel_axis is not None)
        if this != self.layout or nd != self.ndim:
            raise ValueError(f"this model was trained on {self.layout} {self.ndim}D images; got "
                             f"a {this} {nd}D image (check channel_axis / the image kind).")

    def log_proba(self, image: np.ndarray, channel_axis: int | None, *,
                  floor: float = 1e-3, with_border: bool = False,
                  extra: np.ndarray | None = None) -> Any:
        """float32 (*spatial, K): log of the forest's fractions, floored at ``floor``.

        ``with_border=True`` returns ``(logp, D, M)`` with ``D`` the border geodesic distance
        (the feature when the model uses it, else computed) and ``M`` (*spatial, m) the
        features a per-image colour model uses (:func:`mixture_features`).
        """
        self.check(image, channel_axis)
        if self.n_extra and (extra is None or np.shape(extra)[-1] != self.n_extra):
            raise ValueError(f"this likelihood needs {self.n_extra} extra feature channels")
        F = pixel_features(image, channel_axis, sigmas=self.sigmas, border=self.border,
                           extra=extra if self.n_extra else None)
        n_base = F.shape[-1] - self.n_extra
        p = self.forest.proba(F.reshape(-1, F.shape[-1]))
        logp = np.log(np.maximum(p, floor)).astype(np.float32).reshape(F.shape[:-1] + (-1,))
        if not with_border:
            return logp
        if self.border:
            border = F[..., n_base - 1]
        else:
            border = pixel_features(image, channel_axis, sigmas=(), border=True)[..., -1]
        return logp, border, mixture_features(F, self.layout, self.sigmas)

    def to_state(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "layout": self.layout, "ndim": self.ndim,
                "border": self.border, "sigmas": list(self.sigmas), "n_extra": self.n_extra,
                "forest": self.forest.to_state()}

    @classmethod
    def from_state(cls, state: Any) -> "LearnedLikelihood":
        if not isinstance(state, dict):
            raise ValueError("the likelihood entry is not a dict")
        values = state.get("values")
        if not (isinstance(values, list) and all(isinstance(v, int) for v in values)):
            raise ValueError("the class values are missing")
        lay, nd = state.get("layout"), state.get("ndim")
        if not (isinstance(lay, str) and (lay in ("grey", "colour") or
                                          (lay[:1] == "C" and lay[1:].isdigit()))):
            raise ValueError(f"unknown image layout {lay!r}")
        if nd not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {nd!r}")
        sigmas = state.get("sigmas")
        if not (isinstance(sigmas, list) and sigmas and
                all(isinstance(s, (int, float)) and 0 < s <= 64 for s in sigmas)):
            raise ValueError("the feature scales are missing or out of (0, 64]")
        forest = Forest.from_state(state.get("forest"))
        if forest.n_classes != len(values):
            raise ValueError("the forest's class count differs from the class values")
        n_extra = state.get("n_extra", 0)
        if not (isinstance(n_extra, int) and 0 <= n_extra <= 64):
            raise ValueError(f"n_extra must be an int in 0..64, got {n_extra!r}")
        out = cls(forest, np.asarray(values), lay, nd, border=bool(state.get("border", True)),
                  sigmas=sigmas, n_extra=n_extra)
        expected = _n_features(lay, len(sigmas), out.border) + n_extra
        if forest.n_features != expected:
            raise ValueError(f"the forest expects {forest.n_features} features; a {lay} image "
                             f"gives {expected}")
        return out


def _n_features(lay: str, n_sigmas: int, border: bool) -> int:
    full = 2 + 4 * n_sigmas
    light = 1 + n_sigmas
    if lay == "grey":
        n = full
    elif lay == "colour":
        n = full + 2 * light
    else:
        n = int(lay[1:]) * full
    return n + int(border)
