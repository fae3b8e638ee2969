"""``physeg demo``: segment a noisy synthetic image and a small real image, honestly scored.

1. **Synthetic** (exact truth): the seed-000 triangle (:mod:`physeg.data.synthetic`) with
   Gaussian noise of level 3 (s = 0.3) in both regions (:mod:`physeg.data.noise`), 128 x 128.
   Its mask is exact, so the demo prints the Dice coefficient of each method against it.
2. **Real** (no pixel truth): scikit-image's ``coins`` image (303 x 384, bundled with
   scikit-image, so nothing is downloaded; public domain per scikit-image's data README).
   There is no pixel-level ground truth for it, and the demo does not invent one. What *is*
   known is that the photograph shows 24 coins (4 rows of 6, counted by eye), so the demo
   counts the **objects** each method finds (every connected foreground component, after
   filling holes) against those 24, and beside it how many of them are coin-sized (at least
   ``MIN_COIN_AREA`` pixels). The object count is the score: a speck is an object too, so a
   result broken into 98 pieces is 74 too many, and no longer "finds 24 coins" because 24 of
   its pieces happen to be large (counting only the large pieces rewarded the speckled
   result); fewer than 24 means coins merged with each other or with the background.

The main method is ``heat`` when it is registered, else ``chan-vese``; ``otsu`` always runs
as the anchor. Everything is written to ``out_dir`` (default ``demo-out/``): the inputs as
PNG, label images and overlays. Like ``physeg segment``, the demo refuses to replace an
existing file (one error before any work, naming it) unless ``overwrite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_demo", "demo_methods", "count_objects", "demo_files", "N_COINS",
           "MIN_COIN_AREA"]

#: Coins visible in ``skimage.data.coins()`` (4 rows of 6, counted by eye).
N_COINS = 24
#: Smallest component (pixels) counted as a coin; the smallest coin covers about 900 pixels.
MIN_COIN_AREA = 300


def demo_methods() -> list[str]:
    """Methods the demo runs: the main one (heat if registered, else chan-vese), then otsu."""
    from .api import methods

    table = methods()
    main = "heat" if "heat" in table else "chan-vese"
    return [main, "otsu"]


def count_objects(labels: np.ndarray, min_area: int = 1) -> int:
    """Number of 8-connected foreground components of at least ``min_area`` pixels (holes
    filled first, so a coin with dark relief inside still counts once). The default counts
    every component: the demo's score; ``min_area=MIN_COIN_AREA`` the coin-sized ones."""
    from scipy import ndimage

    fg = ndimage.binary_fill_holes(np.asarray(labels) > 0)
    comp, n = ndimage.label(fg, structure=np.ones((3, 3)))
    if n == 0:
        return 0
    areas = np.bincount(comp.ravel())[1:]
    return int(np.count_nonzero(areas >= min_area))


def demo_files(methods: list[str]) -> list[str]:
    """The names the demo writes into its folder, for ``methods``."""
    names = ["synthetic.png", "synthetic_truth.png", "coins.png"]
    for name in methods:
        key = name.replace("-", "_")
        names += [f"synthetic_{key}.png", f"synthetic_{key}_overlay.png", f"coins_{key}.png",
                  f"coins_{key}_overlay.png"]
    return names


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def run_demo(
    out_dir: str | Path = "demo-out",
    *,
    seed: int = 0,
    console: Any = None,
    methods: list[str] | None = None,
    size: int = 128,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the demo; write files into ``out_dir``; print and return the scores.

    Parameters
    ----------
    out_dir : path, default "demo-out"
        Output folder (created).
    seed : int, default 0
        Seed of the noise and of every method.
    console : rich.console.Console, optional
        Where to print; default a new console on stdout.
    methods : list of str, optional
        Methods to run (default :func:`demo_methods`).
    size : int, default 128
        Side of the synthetic image.
    overwrite : bool, default False
        Replace the files of an earlier demo in ``out_dir``; without it an existing file is
        a ``FileExistsError`` before any work.

    Returns
    -------
    dict
        ``{"methods": [...], "synthetic": {method: dice}, "coins": {method: n_objects},
        "coin_sized": {method: n_objects >= MIN_COIN_AREA px}, "n_coins": 24,
        "files": [paths], "ok": True}``.
    """
    import skimage.data
    from rich.table import Table

    from .api import segment
    from .data.noise import noisy_shape
    from .io import write_image, write_labels
    from .metrics import dice
    from .overlay import overlay, with_legend

    if console is None:
        from rich.console import Console

        console = Console(highlight=False, markup=False)  # the folder name prints as given
    out = Path(out_dir)
    names = list(methods) if methods is not None else demo_methods()
    existing = [n for n in demo_files(names) if (out / n).exists()]
    if existing and not overwrite:  # one error before any work, as `physeg segment`
        raise FileExistsError(
            f"{out / existing[0]} already exists ({len(existing)} of the demo's "
            f"{len(demo_files(names))} files are in {out}); use --overwrite to replace them, "
            "or choose another folder (-o DIR)."
        )
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []

    def put_image(name: str, arr: np.ndarray) -> None:
        files.append(str(write_image(out / name, arr, overwrite=overwrite)))

    def put_labels(name: str, lab: np.ndarray) -> None:
        files.append(str(write_labels(out / name, lab, overwrite=overwrite)))

    noisy, mask = noisy_shape("triangle", size, "gaussian", 3, rng=seed)
    put_image("synthetic.png", _to_uint8(noisy))
    put_labels("synthetic_truth.png", mask)
    coins = skimage.data.coins()
    put_image("coins.png", coins)

    synth_scores: dict[str, float] = {}
    coin_counts: dict[str, int] = {}
    coin_sized: dict[str, int] = {}
    for name in names:
        key = name.replace("-", "_")
        lab = segment(noisy, method=name, rng=seed)
        synth_scores[name] = float(dice(lab, mask, average="binary"))
        put_labels(f"synthetic_{key}.png", lab)
        put_image(f"synthetic_{key}_overlay.png", with_legend(overlay(noisy, lab), lab))
        lab_c = segment(coins, method=name, rng=seed)
        coin_counts[name] = count_objects(lab_c)
        coin_sized[name] = count_objects(lab_c, MIN_COIN_AREA)
        put_labels(f"coins_{key}.png", lab_c)
        put_image(f"coins_{key}_overlay.png", with_legend(overlay(coins, lab_c), lab_c))

    table = Table(title="physeg demo", title_justify="left")
    table.add_column("method")
    table.add_column(f"Dice, noisy triangle {size}x{size}\n(exact truth)", justify="right")
    table.add_column(f"objects found\n(photo: {N_COINS} coins)", justify="right")
    table.add_column("of them\ncoin-sized", justify="right")
    for name in names:
        table.add_row(name, f"{synth_scores[name]:.4f}", str(coin_counts[name]),
                      str(coin_sized[name]))
    console.print(table)
    console.print(
        "Synthetic: triangle, Gaussian noise s=0.3 in shape and background "
        f"(seed {seed}); Dice against its exact mask."
    )
    console.print(
        "Real: skimage.data.coins() has no pixel ground truth, so no Dice is claimed for it; "
        f"every object counts (a speck too) against the {N_COINS} coins in the photo: more "
        f"means pieces and specks, fewer means merged coins; coin-sized = >= {MIN_COIN_AREA} px."
    )
    console.print(f"{len(files)} files written to {out}/")
    return {
        "methods": names,
        "synthetic": synth_scores,
        "coins": coin_counts,
        "coin_sized": coin_sized,
        "n_coins": N_COINS,
        "files": files,
        "ok": True,
    }
