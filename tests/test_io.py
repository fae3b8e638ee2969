"""physeg.io: exact round trips, clear errors, atomic and safe writes."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from physeg import io as pio
from physeg.io import (
    SUPPORTED_SUFFIXES,
    ProtectedPathError,
    atomic_write_bytes,
    is_image_file,
    output_path_for,
    read_image,
    read_mask,
    write_image,
    write_labels,
)

RNG = np.random.default_rng(1234)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("grey.png", RNG.integers(0, 256, (7, 9), dtype=np.uint8)),
        ("grey16.png", RNG.integers(0, 65536, (7, 9), dtype=np.uint16)),
        ("rgb.png", RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)),
        ("rgba.png", RNG.integers(0, 256, (7, 9, 4), dtype=np.uint8)),
        ("grey.bmp", RNG.integers(0, 256, (7, 9), dtype=np.uint8)),
        ("rgb.bmp", RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)),
        ("grey.tif", RNG.integers(0, 65536, (7, 9), dtype=np.uint16)),
        ("float.tiff", RNG.random((7, 9)).astype(np.float32)),
        ("rgb.tif", RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)),
        ("vol.tif", RNG.integers(0, 65536, (4, 7, 9), dtype=np.uint16)),
        ("rgbvol.tif", RNG.integers(0, 256, (3, 7, 9, 3), dtype=np.uint8)),
    ],
)
def test_write_read_image_roundtrip_exact(tmp_path, name, array):
    before = array.copy()
    out = write_image(tmp_path / name, array)
    assert out == tmp_path / name
    back = read_image(out)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    np.testing.assert_array_equal(array, before)  # caller's array untouched


@pytest.mark.parametrize("shape", [(16, 20), (16, 20, 3)])
def test_jpeg_roundtrip_is_close(tmp_path, shape):
    yy, xx = np.mgrid[0:16, 0:20]
    smooth = (yy * 8 + xx * 4).astype(np.uint8)
    img = smooth if len(shape) == 2 else np.stack([smooth, smooth // 2, 255 - smooth], -1)
    for suffix in (".jpg", ".jpeg"):
        back = read_image(write_image(tmp_path / f"a{suffix}", img))
        assert back.shape == img.shape and back.dtype == np.uint8
        assert np.abs(back.astype(int) - img.astype(int)).mean() < 4.0


def test_multipage_tiff_written_page_by_page_is_a_volume(tmp_path):
    vol = RNG.integers(0, 255, (5, 6, 7), dtype=np.uint8)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for plane in vol:
            tw.write(plane, contiguous=False, photometric="minisblack")
    back = read_image(path)
    assert back.shape == (5, 6, 7)
    np.testing.assert_array_equal(back, vol)
    assert output_path_for(path, tmp_path / "out") == tmp_path / "out" / "pages.tif"
    assert pio._spatial_shape(path) == (5, 6, 7)


def test_uppercase_suffix_is_supported(tmp_path):
    img = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "A.PNG", img)), img)
    assert is_image_file("x.TIF") and is_image_file("x.Jpeg")


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("name", "labels", "dtype"),
    [
        ("small.png", np.array([[0, 1], [2, 255]]), np.uint8),
        ("mid.png", np.array([[0, 256], [1000, 65535]]), np.uint16),
        ("mid.tif", np.array([[0, 256], [1000, 65535]], dtype=np.int64), np.uint16),
        ("big.tif", np.array([[0, 65536], [1, 4_000_000_000]], dtype=np.int64), np.uint32),
        ("vol.tif", np.arange(2 * 3 * 4).reshape(2, 3, 4), np.uint8),
        ("vol16.tiff", np.arange(2 * 3 * 4).reshape(2, 3, 4) * 2000, np.uint16),
        ("bool.png", np.array([[True, False], [False, True]]), np.uint8),
        ("float.png", np.array([[0.0, 3.0], [7.0, 1.0]], dtype=np.float32), np.uint8),
    ],
)
def test_labels_roundtrip_exact_and_smallest_dtype(tmp_path, name, labels, dtype):
    before = labels.copy()
    path = write_labels(tmp_path / name, labels)
    back = read_mask(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels.astype(np.int64))
    np.testing.assert_array_equal(labels, before)
    assert read_image(path).dtype == dtype  # stored dtype, not just the read conversion


def test_write_labels_png_3d_or_too_many_labels_suggests_tif(tmp_path):
    with pytest.raises(ValueError, match=r"3D labels .* Use a \.tif suffix instead \(v\.tif\)"):
        write_labels(tmp_path / "v.png", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"up to 70000.*\.tif suffix"):
        write_labels(tmp_path / "b.png", np.array([[0, 70000]]))
    assert _files(tmp_path) == []


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_write_labels_refuses_jpeg(tmp_path, suffix):
    with pytest.raises(ValueError, match="JPEG is lossy"):
        write_labels(tmp_path / f"l{suffix}", np.zeros((3, 3), np.uint8))


@pytest.mark.parametrize(
    ("labels", "exc", "match"),
    [
        (np.array([[0, -1]]), ValueError, r"must be >= 0.*minimum is -1"),
        (np.array([[0.5, 1.0]]), ValueError, "must be integers"),
        (np.array([[np.nan, 1.0]]), ValueError, "must be integers"),
        (np.zeros(5, np.uint8), ValueError, r"must be 2D .* or 3D"),
        (np.zeros((0, 3), np.uint8), ValueError, "empty"),
        (np.array([["a", "b"]]), TypeError, "must be an integer array"),
        (np.array([[0, 2**33]], dtype=np.int64), ValueError, r"2\*\*32 - 1"),
    ],
)
def test_write_labels_rejects_bad_labels(tmp_path, labels, exc, match):
    with pytest.raises(exc, match=match):
        write_labels(tmp_path / "x.tif", labels)
    assert _files(tmp_path) == []


def test_write_labels_bad_suffix_lists_allowed(tmp_path):
    with pytest.raises(ValueError, match=r"use one of \.png, \.tif, \.tiff"):
        write_labels(tmp_path / "x.bmp", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="unsupported suffix"):
        write_labels(tmp_path / "x.npy", np.zeros((2, 2), np.uint8))


def test_read_mask_accepts_grey_stored_as_rgb_and_opaque_rgba(tmp_path):
    lab = RNG.integers(0, 5, (6, 7), dtype=np.uint8)
    write_image(tmp_path / "rgb.png", np.stack([lab] * 3, -1))
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), lab)
    rgba = np.concatenate([np.stack([lab] * 3, -1), np.full((6, 7, 1), 255, np.uint8)], -1)
    write_image(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba.png"), lab)


def test_read_mask_rejects_colour_and_alpha(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    write_image(tmp_path / "c.png", rgb)
    with pytest.raises(ValueError, match="colour image with different channels"):
        read_mask(tmp_path / "c.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    write_image(tmp_path / "a.png", rgba)
    with pytest.raises(ValueError, match="varying alpha"):
        read_mask(tmp_path / "a.png")


def test_read_mask_float_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "ok.tif", np.array([[0.0, 2.0], [3.0, 1.0]], np.float32))
    back = read_mask(tmp_path / "ok.tif")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, [[0, 2], [3, 1]])
    tifffile.imwrite(tmp_path / "prob.tif", np.array([[0.0, 0.25]], np.float32))
    with pytest.raises(ValueError, match="non-integer float values.*threshold it first"):
        read_mask(tmp_path / "prob.tif")
    tifffile.imwrite(tmp_path / "nan.tif", np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="NaN/infinite"):
        read_mask(tmp_path / "nan.tif")
    tifffile.imwrite(tmp_path / "neg.tif", np.array([[0, -3]], np.int16))
    with pytest.raises(ValueError, match="negative labels"):
        read_mask(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "signed.tif", np.array([[0, 300]], np.int32))
    assert read_mask(tmp_path / "signed.tif").dtype == np.uint16


def test_read_mask_palette_png_gives_indices(tmp_path):
    from PIL import Image

    idx = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), idx)
    assert read_image(tmp_path / "p.png").shape == (2, 3, 3)  # as displayed: RGB


# ----------------------------------------------------------------------------- read errors


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*nope\.png"):
        read_image(missing)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_mask(missing)


def test_directory_given_as_file(tmp_path):
    d = tmp_path / "dir.png"
    d.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory, expected an image file"):
        read_image(d)


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"could not read .*e\.png: the file is empty \(0 bytes\)"):
        read_image(tmp_path / "e.png")


@pytest.mark.parametrize(
    ("name", "fmt"), [("r.png", "PNG"), ("r.jpg", "JPEG"), ("r.bmp", "BMP"), ("r.tif", "TIFF")]
)
def test_random_bytes_are_reported_corrupt(tmp_path, name, fmt):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match=rf"could not read .*{name}.*corrupt or not a {fmt}"):
        read_image(tmp_path / name)
    with pytest.raises(ValueError, match="corrupt"):
        read_mask(tmp_path / name)


def test_truncated_png(tmp_path):
    path = write_image(tmp_path / "t.png", RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"could not read .*t\.png.*corrupt or not a PNG"):
        read_image(path)


def test_png_content_with_jpeg_suffix_reads_exactly(tmp_path):
    img = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    os.replace(tmp_path / "a.png", tmp_path / "a.jpg")
    np.testing.assert_array_equal(read_image(tmp_path / "a.jpg"), img)


def test_unsupported_suffix_lists_supported(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match=r"unsupported file type '\.gif'.*\.png, \.jpg"):
        read_image(tmp_path / "a.gif")
    (tmp_path / "noext").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\(no suffix\)"):
        read_image(tmp_path / "noext")


def test_read_rejects_non_path():
    with pytest.raises(TypeError, match="expected a file path"):
        read_image(np.zeros((2, 2)))


def _png16_rgb(a: np.ndarray) -> bytes:
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_16bit_colour_png_is_refused_not_truncated(tmp_path):
    a = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    (tmp_path / "c16.png").write_bytes(_png16_rgb(a))
    with pytest.raises(ValueError, match="16-bit colour.*reduce it to 8 bits.*TIFF"):
        read_image(tmp_path / "c16.png")
    with pytest.raises(ValueError, match=r"cannot write dtype uint16 colour image to PNG"):
        write_image(tmp_path / "w16.png", a)


# ----------------------------------------------------------------------------- write errors


@pytest.mark.parametrize(
    ("name", "image", "match"),
    [
        ("f.png", np.zeros((3, 3), np.float32), r"dtype float32 .*use a \.tif suffix"),
        ("v.png", np.zeros((2, 3, 5), np.uint8), r"cannot write shape \(2, 3, 5\).*\.tif"),
        ("a.jpg", np.zeros((3, 3, 4), np.uint8), "no alpha channel"),
        ("a.bmp", np.zeros((3, 3, 4), np.uint8), "no alpha channel"),
        ("a.jpg", np.zeros((3, 3), np.uint16), "JPEG holds uint8"),
        ("a.gif", np.zeros((3, 3), np.uint8), r"unsupported suffix '\.gif'"),
        ("a.tif", np.zeros((2, 2, 2, 2, 2), np.uint8), "must be \\(rows, cols\\)"),
    ],
)
def test_write_image_errors(tmp_path, name, image, match):
    with pytest.raises(ValueError, match=match):
        write_image(tmp_path / name, image)
    assert _files(tmp_path) == []


# ----------------------------------------------------------------------------- safety


def test_refuses_to_overwrite_without_flag(tmp_path):
    first = np.ones((3, 3), np.uint8)
    path = write_labels(tmp_path / "o.png", first)
    with pytest.raises(FileExistsError, match=r"use --overwrite / overwrite=True"):
        write_labels(path, first * 2)
    with pytest.raises(FileExistsError, match=r"use --overwrite / overwrite=True"):
        write_image(path, first * 2)
    np.testing.assert_array_equal(read_mask(path), first)
    write_labels(path, first * 2, overwrite=True)
    np.testing.assert_array_equal(read_mask(path), first * 2)
    assert _files(tmp_path) == ["o.png"]


def test_creates_parent_dirs_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "b" / "c.tif"
    write_labels(path, np.zeros((2, 3, 4), np.uint16))
    assert _files(path.parent) == ["c.tif"]


def test_protect_inputs_even_with_overwrite(tmp_path):
    src = write_image(tmp_path / "in.png", np.full((3, 3), 9, np.uint8))
    original = src.read_bytes()
    for kwargs in ({}, {"overwrite": True}):
        with pytest.raises(ProtectedPathError, match="one of the input files"):
            write_labels(src, np.zeros((3, 3), np.uint8), protect=[src], **kwargs)
        with pytest.raises(ProtectedPathError, match="never writes over an input"):
            write_image(src, np.zeros((3, 3), np.uint8), protect=[src], **kwargs)
        with pytest.raises(ProtectedPathError):
            atomic_write_bytes(src, b"x", protect=[src], **kwargs)
    # the same file through another spelling and through a hard link
    alias = tmp_path / "sub" / ".." / "in.png"
    with pytest.raises(ProtectedPathError):
        write_labels(alias, np.zeros((3, 3), np.uint8), overwrite=True, protect=[str(src)])
    link = tmp_path / "link.png"
    os.link(src, link)
    with pytest.raises(ProtectedPathError):
        write_labels(link, np.zeros((3, 3), np.uint8), overwrite=True, protect=[src])
    assert src.read_bytes() == original
    assert sorted(_files(tmp_path)) == ["in.png", "link.png"]
    # a single path instead of a collection is accepted too
    with pytest.raises(ProtectedPathError):
        write_labels(src, np.zeros((3, 3), np.uint8), overwrite=True, protect=src)


def test_failed_write_leaves_existing_output_untouched(tmp_path, monkeypatch):
    path = write_labels(tmp_path / "keep.png", np.ones((3, 3), np.uint8))
    original = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        write_labels(path, np.zeros((3, 3), np.uint8), overwrite=True)
    assert path.read_bytes() == original
    assert _files(tmp_path) == ["keep.png"]


def test_failed_encoding_leaves_nothing(tmp_path, monkeypatch):
    def broken_encode(*args, **kwargs):
        raise RuntimeError("encoder crashed (simulated)")

    monkeypatch.setattr(pio._write, "_encode", broken_encode)
    with pytest.raises(RuntimeError, match="simulated"):
        write_labels(tmp_path / "x.png", np.zeros((3, 3), np.uint8))
    assert _files(tmp_path) == []


def test_no_clobber_when_file_appears_during_write(tmp_path, monkeypatch):
    target = tmp_path / "race.bin"
    real_open_temp = pio._write._open_temp

    def open_temp_then_someone_writes(folder, name):
        out = real_open_temp(folder, name)
        target.write_bytes(b"theirs")
        return out

    monkeypatch.setattr(pio._write, "_open_temp", open_temp_then_someone_writes)
    with pytest.raises(FileExistsError, match="appeared meanwhile"):
        atomic_write_bytes(target, b"mine", overwrite=False)
    assert target.read_bytes() == b"theirs"
    assert _files(tmp_path) == ["race.bin"]


def test_atomic_write_bytes(tmp_path):
    p = atomic_write_bytes(tmp_path / "m" / "model.json", b'{"a": 1}')
    assert p.read_bytes() == b'{"a": 1}'
    atomic_write_bytes(p, b"{}")  # overwrite=True by default (Model.save)
    assert p.read_bytes() == b"{}"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        atomic_write_bytes(p, b"x", overwrite=False)
    with pytest.raises(TypeError, match="data must be bytes"):
        atomic_write_bytes(p, "text")
    with pytest.raises(IsADirectoryError, match="a directory with that name exists"):
        atomic_write_bytes(tmp_path / "m", b"x")
    assert _files(p.parent) == ["model.json"]
    mode = p.stat().st_mode & 0o777
    assert mode & 0o600 == 0o600  # readable and writable by the owner, not a 0600 temp leftover
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


# ----------------------------------------------------------------------------- naming


def test_output_path_for(tmp_path):
    assert output_path_for("x/img.jpg", tmp_path) == tmp_path / "img.png"
    assert output_path_for(Path("img.bmp"), "out", suffix="tif") == Path("out/img.tif")
    flat = write_image(tmp_path / "flat.tif", np.zeros((4, 5), np.uint8))
    assert output_path_for(flat, tmp_path / "o") == tmp_path / "o" / "flat.png"
    rgb = write_image(tmp_path / "rgb.tif", np.zeros((4, 5, 3), np.uint8))
    assert output_path_for(rgb, tmp_path / "o") == tmp_path / "o" / "rgb.png"
    vol = write_image(tmp_path / "vol.tiff", np.zeros((3, 4, 5), np.uint8))
    assert output_path_for(vol, tmp_path / "o") == tmp_path / "o" / "vol.tif"
    with pytest.raises(ValueError, match="label outputs must be"):
        output_path_for("a.png", tmp_path, suffix=".jpg")


def test_is_image_file_and_suffixes():
    assert set(SUPPORTED_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    assert is_image_file("a/b.png") and is_image_file(Path("c.tiff"))
    assert not is_image_file("a.txt") and not is_image_file("a")
    assert not is_image_file(".a.png.1234.tmp") and not is_image_file("._a.png")


def test_spatial_shape_from_header(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((4, 5, 3), np.uint8))
    assert pio._spatial_shape(tmp_path / "a.png") == (4, 5)
    write_image(tmp_path / "b.tif", np.zeros((2, 4, 5, 3), np.uint8))
    assert pio._spatial_shape(tmp_path / "b.tif") == (2, 4, 5)


@pytest.mark.data
def test_reads_real_masks(shared_data):
    mask = read_mask(shared_data / "weizmann_horse" / "masks" / "horse004.png")
    image = read_image(shared_data / "weizmann_horse" / "images" / "horse004.png")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert image.shape == mask.shape + (3,)


def _dead_pid() -> int:
    """The id of a process of this host that has exited (reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_dead_writers_temporary_files_are_removed(tmp_path):
    # Another running batch's temporary file (a live writer: this process) must survive the
    # start-up sweep of a second run; a killed writer's is removed; finished files are kept.
    pio.write_labels(tmp_path / "a.png", np.ones((4, 4), np.uint8))
    host = pio._write._host_tag()
    live = tmp_path / f".b.png.{host}-{os.getpid()}-{'0' * 12}{pio.TEMP_SUFFIX}"
    dead = tmp_path / f".c.png.{host}-{_dead_pid()}-{'1' * 12}{pio.TEMP_SUFFIX}"
    other_host = tmp_path / f".d.png.{'f' * 8}-{_dead_pid()}-{'2' * 12}{pio.TEMP_SUFFIX}"
    for p in (live, dead, other_host):
        p.write_bytes(b"half written")
    removed = pio.remove_stale_temps(tmp_path)
    assert removed == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.png", live.name, other_host.name])
    assert pio.same_file(tmp_path / "a.png", tmp_path / "." / "a.png")


def test_temporary_files_name_their_writer(tmp_path, monkeypatch):
    seen = []
    real_open_temp = pio._write._open_temp

    def spy(folder, name):
        fd, tmp = real_open_temp(folder, name)
        seen.append(tmp.name)
        return fd, tmp

    monkeypatch.setattr(pio._write, "_open_temp", spy)
    write_labels(tmp_path / "x.png", np.ones((3, 3), np.uint8))
    assert pio._write._TEMP_NAME.match(seen[0])
    assert f"-{os.getpid()}-" in seen[0]
    assert _files(tmp_path) == ["x.png"]


def test_no_clobber_without_hard_links(tmp_path, monkeypatch):
    # A file system without hard links: the commit must still never replace a file another
    # writer created (exclusively) at the last moment.
    target = tmp_path / "race.bin"
    real_replace = os.replace
    competitor = {}

    def no_links(src, dst, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    def replace_after_a_competitor(src, dst):
        try:  # the other writer claims the name the only safe way: exclusively
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            competitor["won"] = False
        else:
            os.write(fd, b"theirs")
            os.close(fd)
            competitor["won"] = True
        return real_replace(src, dst)

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(os, "replace", replace_after_a_competitor)
    try:
        atomic_write_bytes(target, b"mine", overwrite=False)
        raised = False
    except FileExistsError:
        raised = True
    if competitor.get("won"):
        assert raised and target.read_bytes() == b"theirs"  # reported, not replaced
    else:
        assert not raised and target.read_bytes() == b"mine"
    assert _files(tmp_path) == ["race.bin"]


def _png_declaring(rows: int, cols: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _tiff_declaring(rows: int, cols: int) -> bytes:
    """A little-endian baseline TIFF whose tags declare rows x cols uint8 (one tiny strip)."""
    strip = zlib.compress(b"\0" * 64)
    tags = [(256, 4, cols), (257, 4, rows), (258, 3, 8), (259, 3, 8), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, rows), (279, 4, len(strip))]
    ifd_at = 8 + len(strip)
    ifd = struct.pack("<H", len(tags))
    for tag, typ, value in tags:
        if tag == 273:
            value = 8
        ifd += struct.pack("<HHI", tag, typ, 1) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    ifd += struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_at) + strip + ifd


@pytest.mark.parametrize("name,make", [("huge.png", _png_declaring),
                                       ("huge.tif", _tiff_declaring)])
def test_oversized_images_are_too_large_not_corrupt(tmp_path, name, make):
    path = tmp_path / name
    path.write_bytes(make(100_000, 100_000))
    with pytest.raises(pio.ImageTooLargeError,
                       match=r"too large: 10000000000 pixels \(100000 x 100000\) > limit "
                       r"100000000; raise --max-pixels .*physeg\.families\.heat\.blockwise"):
        read_image(path)
    with pytest.raises(pio.ImageTooLargeError, match="too large"):
        read_mask(path)
    assert issubclass(pio.ImageTooLargeError, ValueError)


def test_max_pixels_is_the_documented_limit(tmp_path):
    write_image(tmp_path / "a.png", np.zeros((20, 30), np.uint8))
    write_image(tmp_path / "v.tif", np.zeros((3, 20, 30), np.uint8))
    with pytest.raises(pio.ImageTooLargeError, match="600 pixels .* > limit 599"):
        read_image(tmp_path / "a.png", max_pixels=599)
    with pytest.raises(pio.ImageTooLargeError, match=r"1800 pixels \(3 x 20 x 30\)"):
        read_image(tmp_path / "v.tif", max_pixels=1000)
    assert read_image(tmp_path / "a.png", max_pixels=600).shape == (20, 30)
    assert read_image(tmp_path / "v.tif", max_pixels=None).shape == (3, 20, 30)
    assert pio.DEFAULT_MAX_PIXELS == 100_000_000
    with pytest.raises(ValueError, match="positive whole number"):
        read_image(tmp_path / "a.png", max_pixels=0)


def test_channels_are_reported_as_stored(tmp_path):
    # grey+alpha PNG and a 2D TIFF with 5 samples per pixel hold channels, not planes
    la = np.stack([np.full((8, 9), 100, np.uint8), np.full((8, 9), 255, np.uint8)], -1)
    write_image(tmp_path / "la.tif", la)  # written as a 2-plane volume by default ...
    from PIL import Image

    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((8, 9, 5), np.uint8),
                     photometric="minisblack", planarconfig="contig")
    img, axis = pio.read_image_and_axis(tmp_path / "la.png")
    assert img.shape == (8, 9, 2) and axis == -1
    img, axis = pio.read_image_and_axis(tmp_path / "five.tif")
    assert img.shape == (8, 9, 5) and axis == -1
    img, axis = pio.read_image_and_axis(tmp_path / "la.tif")  # ... and read as one
    assert img.shape == (8, 9, 2) and axis is None
    assert pio.read_image_and_axis(tmp_path / "five.tif", max_pixels=72)[1] == -1


def test_symlink_loop_at_the_output_is_a_clear_error(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    with pytest.raises(FileExistsError, match="link loop; remove it"):
        write_labels(loop, np.ones((3, 3), np.uint8))
    assert not pio.same_file(loop, tmp_path / "other.png")
    write_labels(loop, np.ones((3, 3), np.uint8), overwrite=True)  # replaces the link itself
    assert not loop.is_symlink() and read_mask(loop).shape == (3, 3)


def test_os_failures_are_one_line_output_errors(tmp_path, monkeypatch):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(pio.OutputError, match="a part of the path is a file, not a folder"):
        write_labels(tmp_path / "file" / "a.png", np.ones((3, 3), np.uint8))
    with pytest.raises(pio.OutputError, match="it is a file, not a folder"):
        pio.prepare_folder(tmp_path / "file")

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(pio.DiskFullError, match="no space left on the device") as info:
        write_labels(tmp_path / "b.png", np.ones((3, 3), np.uint8))
    assert info.value.errno == 28 and pio.is_disk_full(info.value)
    monkeypatch.undo()
    assert _files(tmp_path) == ["file"]


# ----------------------------------------------------------------------------- the log


def test_append_log_is_never_an_input_and_never_clobbers(tmp_path):
    src = write_image(tmp_path / "in.png", np.zeros((4, 4), np.uint8))
    original = src.read_bytes()
    with pytest.raises(ProtectedPathError, match="never writes over an input"):
        pio.AppendLog(src, protect=[src])
    link = tmp_path / "link.log"
    link.symlink_to(src)
    with pytest.raises(ProtectedPathError):
        pio.AppendLog(link, protect=[src], overwrite=True)
    with pytest.raises(IsADirectoryError, match="name a file"):
        pio.AppendLog(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(FileExistsError, match="not a physeg log.*--overwrite"):
        pio.AppendLog(notes)
    assert notes.read_text() == "my notes\n" and src.read_bytes() == original
    with pio.AppendLog(tmp_path / "run.jsonl") as log:
        log.write({"event": "run", "n": 1})
    with pio.AppendLog(tmp_path / "run.jsonl") as log:  # a physeg log is appended to
        log.write({"event": "summary", "n": 2})
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["run", "summary"]


def test_append_log_never_leaves_a_torn_line(tmp_path, monkeypatch):
    log = pio.AppendLog(tmp_path / "run.jsonl")
    log.write({"event": "run"})
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(pio.DiskFullError, match="cannot write the log"):
        log.write({"event": "file", "input": "x" * 50})
    monkeypatch.undo()
    log.write({"event": "summary"})
    log.close()
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["run", "summary"]
