"""physeg.data.datasets: manifest and folder pairing, input expansion, split, data root."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from physeg.data import datasets as dsmod
from physeg.data.datasets import (
    FolderDataset,
    Sample,
    check_pair,
    data_root,
    find_images,
    load_pairs,
    pair_folders,
    split,
)
from physeg.io import write_image, write_labels


def _img(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _lab(h: int = 6, w: int = 8, value: int = 1) -> np.ndarray:
    lab = np.zeros((h, w), np.uint8)
    lab[1:4, 2:6] = value
    return lab


def make_pairs(root: Path, stems=("a", "b", "c"), annotators: int = 0) -> Path:
    """images/<stem>.png and masks/<stem>.png (or <stem>_<k>.png, k = 1..annotators)."""
    for i, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}.png", _img(seed=i))
        if annotators:
            for k in range(1, annotators + 1):
                write_labels(root / "masks" / f"{stem}_{k}.png", _lab(value=k))
        else:
            write_labels(root / "masks" / f"{stem}.png", _lab(value=i + 1))
    return root


def write_manifest(root: Path, rows: list[dict[str, str]]) -> None:
    cols = list(rows[0])
    text = ",".join(cols) + "\n" + "".join(",".join(r[c] for c in cols) + "\n" for r in rows)
    (root / "manifest.csv").write_text(text)


# ----------------------------------------------------------------------------- folders


def test_folder_dataset_without_manifest_pairs_by_stem(tmp_path):
    make_pairs(tmp_path, stems=("b", "a", "c"))
    ds = FolderDataset(tmp_path)
    assert len(ds) == 3 and ds.ids == ["a", "b", "c"]
    s = ds["b"]
    assert s.image_path == tmp_path / "images" / "b.png"
    assert s.mask_paths == (tmp_path / "masks" / "b.png",)
    image, masks = s.load()
    np.testing.assert_array_equal(image, _img(seed=0))  # "b" was written first (seed 0)
    np.testing.assert_array_equal(masks[0], _lab(value=1))
    np.testing.assert_array_equal(s.mask(), _lab(value=1))
    assert [x.id for x in ds] == ds.ids and ds[-1].id == "c" and ds[0] is ds["a"]
    assert "3 samples" in repr(ds) and ds.name == tmp_path.name
    ds.validate()


def test_multi_annotator_masks_sorted_numerically(tmp_path):
    make_pairs(tmp_path, stems=("x",), annotators=0)
    (tmp_path / "masks" / "x.png").unlink()
    for k in (10, 2, 1):
        write_labels(tmp_path / "masks" / f"x_{k}.png", _lab(value=k))
    (s,) = pair_folders(tmp_path / "images", tmp_path / "masks")
    assert [p.name for p in s.mask_paths] == ["x_1.png", "x_2.png", "x_10.png"]
    assert [int(m.max()) for m in s.masks()] == [1, 2, 10]


def test_exact_stem_beats_annotator_pattern(tmp_path):
    make_pairs(tmp_path, stems=("a", "a_1"))
    samples = {s.id: s for s in pair_folders(tmp_path / "images", tmp_path / "masks")}
    assert [p.name for p in samples["a"].mask_paths] == ["a.png"]
    assert [p.name for p in samples["a_1"].mask_paths] == ["a_1.png"]


def test_unmatched_files_are_listed(tmp_path):
    make_pairs(tmp_path, stems=("a", "b"))
    for i in range(7):
        write_image(tmp_path / "images" / f"lonely{i}.png", _img())
    write_labels(tmp_path / "masks" / "orphan.png", _lab())
    msg = (
        r"7 image\(s\) .* without a mask: lonely0\.png.*lonely4\.png \(and 2 more\); "
        r"1 mask\(s\) .* without an image: orphan\.png"
    )
    with pytest.raises(ValueError, match=msg):
        pair_folders(tmp_path / "images", tmp_path / "masks")
    loose = pair_folders(tmp_path / "images", tmp_path / "masks", strict=False)
    assert [s.id for s in loose] == ["a", "b"]


def test_duplicate_stems_rejected(tmp_path):
    make_pairs(tmp_path, stems=("a",))
    write_image(tmp_path / "images" / "a.jpg", _img())
    with pytest.raises(ValueError, match=r"same name stem: a\.jpg / a\.png"):
        pair_folders(tmp_path / "images", tmp_path / "masks")


def test_pair_folders_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="images folder not found"):
        pair_folders(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        pair_folders(tmp_path / "empty", tmp_path)
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        pair_folders(tmp_path / "empty", tmp_path / "f.png")


def test_two_separate_folders(tmp_path):
    """`physeg evaluate PRED GT`: predictions in one folder, ground truth in another."""
    for stem in ("p", "q"):
        write_labels(tmp_path / "pred" / f"{stem}.png", _lab())
        for k in (1, 2):
            write_labels(tmp_path / "gt" / f"{stem}_{k}.png", _lab(value=k))
    samples = pair_folders(tmp_path / "pred", tmp_path / "gt")
    assert [s.id for s in samples] == ["p", "q"]
    assert [p.name for p in samples[1].mask_paths] == ["q_1.png", "q_2.png"]
    ds = FolderDataset(tmp_path, images="pred", masks=tmp_path / "gt")
    assert ds.ids == ["p", "q"]


def test_size_mismatch_is_reported_with_names(tmp_path):
    make_pairs(tmp_path, stems=("a", "b"))
    write_labels(tmp_path / "masks" / "b.png", np.zeros((5, 8), np.uint8), overwrite=True)
    ds = FolderDataset(tmp_path)
    ds["a"].load()
    msg = r"sizes differ .*b\.png vs .*b\.png.*\(6, 8, 3\).*\(5, 8\)"
    with pytest.raises(ValueError, match=msg):
        ds["b"].load()
    msg = r"1 image/mask pair\(s\) .* b\.png \(6, 8\) vs b\.png \(5, 8\)"
    with pytest.raises(ValueError, match=msg):
        ds.validate()


def test_check_pair():
    check_pair(np.zeros((4, 5, 3)), np.zeros((4, 5), np.uint8))
    check_pair(np.zeros((2, 4, 5)), np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"image shape \(4, 5\), mask shape \(5, 4\)"):
        check_pair(np.zeros((4, 5)), np.zeros((5, 4), np.uint8))


def test_sample_without_mask():
    s = Sample(id="z", image_path=Path("z.png"))
    assert s.masks() == [] and s.meta == {}
    with pytest.raises(ValueError, match="has no mask file"):
        s.mask()
    twin = Sample(id="z", image_path=Path("z.png"), meta={"k": 1})
    assert hash(s) == hash(twin) and s != twin and len({s, twin}) == 2  # hashable


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        FolderDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no manifest.csv and no 'images/' sub-folder"):
        FolderDataset(tmp_path)


def test_limit_and_indexing(tmp_path):
    make_pairs(tmp_path, stems=("a", "b", "c"))
    ds = FolderDataset(tmp_path, limit=2)
    assert ds.ids == ["a", "b"]
    assert len(FolderDataset(tmp_path, limit=0)) == 0
    with pytest.raises(ValueError, match="limit must be None or an integer >= 0"):
        FolderDataset(tmp_path, limit=-1)
    with pytest.raises(KeyError, match="no sample with id 'c'"):
        ds["c"]
    with pytest.raises(TypeError, match="int or an id string"):
        ds[1.5]


# ----------------------------------------------------------------------------- manifest


def test_manifest_layout(tmp_path):
    make_pairs(tmp_path, stems=("007", "010"), annotators=2)
    write_manifest(
        tmp_path,
        [
            {"id": "010", "height": "6", "ratio": "0.5", "kind": "gray", "image": "images/010.png",
             "masks": "masks/010_1.png;masks/010_2.png"},
            {"id": "007", "height": "6", "ratio": "1.25", "kind": "rgb", "image": "images/007.png",
             "masks": "masks/007_2.png"},
        ],
    )
    ds = FolderDataset(tmp_path)
    assert ds.ids == ["010", "007"]  # manifest order, ids stay strings
    assert ds["010"].meta == {"height": 6, "ratio": 0.5, "kind": "gray"}
    assert [p.name for p in ds["010"].mask_paths] == ["010_1.png", "010_2.png"]
    assert [p.name for p in ds["007"].mask_paths] == ["007_2.png"]
    assert int(ds["007"].mask().max()) == 2


def test_manifest_missing_files_listed(tmp_path):
    make_pairs(tmp_path, stems=("a",))
    write_manifest(
        tmp_path,
        [{"id": "a", "image": "images/a.png", "masks": "masks/a.png;masks/gone.png"},
         {"id": "b", "image": "images/b.png", "masks": "masks/b.png"}],
    )
    with pytest.raises(FileNotFoundError, match=r"3 file\(s\) listed in .*manifest\.csv do not "
                       r"exist: masks/gone\.png, images/b\.png, masks/b\.png"):
        FolderDataset(tmp_path)


def test_manifest_bad_columns_and_duplicates(tmp_path):
    make_pairs(tmp_path, stems=("a",))
    (tmp_path / "manifest.csv").write_text("name,image\na,images/a.png\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['id', 'masks'\]"):
        FolderDataset(tmp_path)
    write_manifest(
        tmp_path,
        [{"id": "a", "image": "images/a.png", "masks": "masks/a.png"}] * 2,
    )
    with pytest.raises(ValueError, match="id 'a' appears more than once"):
        FolderDataset(tmp_path)
    # other folder names than the defaults ignore the manifest
    assert FolderDataset(tmp_path, images=tmp_path / "images").ids == ["a"]


# ----------------------------------------------------------------------------- find_images


def test_find_images_files_folders_globs(tmp_path):
    for name in ("b.png", "a.jpg", "c.tif", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"x")
    got = find_images([str(tmp_path)])
    assert [p.name for p in got] == ["a.jpg", "b.png", "c.tif"]  # sorted, non-recursive
    got = find_images([str(tmp_path / "c.tif"), str(tmp_path / "*.png"), tmp_path / "b.png"])
    assert [p.name for p in got] == ["c.tif", "b.png"]  # input order, duplicates removed
    assert find_images(str(tmp_path / "sub")) == [tmp_path / "sub" / "deep.png"]


def test_find_images_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="input not found: '.*nope.png'"):
        find_images([str(tmp_path / "nope.png")])
    with pytest.raises(ValueError, match=r"'.*notes\.txt' is not a supported image file.*\.png"):
        find_images([str(tmp_path / "notes.txt")])
    with pytest.raises(ValueError, match="folder '.*empty' holds no image files"):
        find_images([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match=r"pattern '.*\*\.jpg' matches no image files"):
        find_images([str(tmp_path / "*.jpg")])
    with pytest.raises(ValueError, match="no inputs given"):
        find_images([])


# ----------------------------------------------------------------------------- split


def test_split_is_seeded_and_partitions():
    items = list(range(20))
    tr1, te1 = split(items, 7, rng=3)
    tr2, te2 = split(items, 7, rng=np.random.default_rng(3))
    assert tr1 == tr2 and te1 == te2
    assert len(tr1) == 7 and sorted(tr1 + te1) == items
    assert tr1 == sorted(tr1) and te1 == sorted(te1)
    assert split(items, 7, rng=4)[0] != tr1
    assert split(items, 0, rng=0) == ([], items) and split(items, 20, rng=0) == (items, [])
    with pytest.raises(ValueError, match=r"n_train=21 is out of range.*0 <= n_train <= 20"):
        split(items, 21, rng=0)
    with pytest.raises(TypeError, match="n_train must be an integer"):
        split(items, 0.5, rng=0)



def test_split_is_nested_in_n_train():
    """With one seed, a smaller training part lies inside a larger one (S = 10 within S = 30),
    and the indices equal one permutation's prefix and rest (the trainers' hold-out split)."""
    items = list(range(75))
    train30, test30 = split(items, 30, rng=0)
    train10, _ = split(items, 10, rng=0)
    assert set(train10) <= set(train30) and not set(train30) & set(test30)
    perm = np.random.default_rng(0).permutation(75)
    assert train30 == sorted(perm[:30].tolist()) and test30 == sorted(perm[30:].tolist())


def test_load_pairs_reads_images_and_first_masks(tmp_path):
    ds = FolderDataset(make_pairs(tmp_path, stems=("b", "a")))
    ids, images, masks = load_pairs(ds)
    assert ids == ["a", "b"]
    np.testing.assert_array_equal(images[1], _img(seed=0))
    np.testing.assert_array_equal(masks[0], _lab(value=2))
    train, _ = split(ds.samples, 1, rng=0)
    assert load_pairs(train)[0] == [train[0].id]
    with pytest.raises(ValueError, match="has no mask file"):
        load_pairs([Sample(id="x", image_path=ds[0].image_path)])
    write_labels(tmp_path / "masks" / "a.png", np.zeros((3, 3), np.uint8), overwrite=True)
    with pytest.raises(ValueError, match="sizes differ"):
        load_pairs(ds)

# ----------------------------------------------------------------------------- data_root


def test_data_root_env(tmp_path, monkeypatch):
    (tmp_path / "bsds500").mkdir()
    monkeypatch.setenv("PHYSEG_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert data_root("bsds500") == tmp_path / "bsds500"
    with pytest.raises(FileNotFoundError, match="no dataset 'nope' .* available: bsds500"):
        data_root("nope")
    monkeypatch.setenv("PHYSEG_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="PHYSEG_DATA=.* is not a folder"):
        data_root()


def test_data_root_search_order(tmp_path, monkeypatch):
    monkeypatch.delenv("PHYSEG_DATA", raising=False)
    monkeypatch.setattr(dsmod, "_repo_root", lambda: tmp_path / "a" / "repo")
    (tmp_path / "b" / "work").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "b" / "work")
    with pytest.raises(FileNotFoundError, match="no datasets folder found .* set PHYSEG_DATA"):
        data_root()
    (tmp_path / "b" / "shared" / "data").mkdir(parents=True)
    assert data_root() == tmp_path / "b" / "shared" / "data"  # beside the CWD
    (tmp_path / "a" / "shared" / "data").mkdir(parents=True)
    assert data_root() == tmp_path / "a" / "shared" / "data"  # beside the repository first


# ----------------------------------------------------------------------------- real data


@pytest.mark.data
def test_real_weizmann_horse(shared_data):
    ds = FolderDataset(shared_data / "weizmann_horse", limit=3)
    assert len(ds) == 3
    for s in ds:
        image, masks = s.load()
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert len(masks) == 1 and masks[0].shape == image.shape[:2]
        assert set(np.unique(masks[0])) <= {0, 1} and masks[0].max() == 1
        assert (s.meta["height"], s.meta["width"]) == image.shape[:2]


@pytest.mark.data
def test_real_bsds500_multi_annotator(shared_data):
    root = shared_data / "bsds500"
    ds = FolderDataset(root, limit=2)
    s = ds[0]
    assert s.image_path.suffix == ".jpg"
    image, masks = s.load()
    assert image.shape in ((321, 481, 3), (481, 321, 3))
    assert len(masks) == s.meta["n_annotators"] >= 4
    counts = [int(c) for c in str(s.meta["n_segments"]).split(";")]
    for mask, n in zip(masks, counts, strict=True):
        assert mask.shape == image.shape[:2] and mask.min() >= 1  # label 0 never occurs
        assert len(np.unique(mask)) == n
    # the same pairs come out of stem pairing without the manifest
    paired = {x.id: x for x in pair_folders(root / "images", root / "masks")}
    assert paired[s.id].mask_paths == s.mask_paths
    assert os.fspath(find_images([str(root / "images")])[0]).endswith(".jpg")
