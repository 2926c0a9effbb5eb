"""Depth/photo file reading and atomic writing."""

import cv2
import numpy as np
import pytest

from boost_core import image_io as io


def test_quantize16_is_the_reference_truncation():
    depth = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    q = io.quantize16(depth)
    assert q.dtype == np.uint16
    assert q.tolist() == [[0, 16383], [32767, 65535]]  # truncated, not rounded (16383.75 -> 16383)


def test_constant_map_quantizes_to_zeros_instead_of_crashing():
    assert not io.quantize16(np.full((3, 4), 0.5, np.float32)).any()


def test_all_formats_round_trip(tmp_path):
    depth = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    paths = io.output_paths("shot", tmp_path, io.FORMATS)
    io.write_depth_files(depth, paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot.exr", "shot.npy", "shot.png", "shot_color.png"]
    np.testing.assert_array_equal(io.read_depth(paths["npy"]), depth)
    np.testing.assert_array_equal(io.read_depth(paths["exr"]), depth)
    png = cv2.imread(str(paths["png16"]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == depth.shape
    np.testing.assert_array_equal(png, io.quantize16(depth))
    color = cv2.imread(str(paths["color"]), cv2.IMREAD_UNCHANGED)
    assert color.shape == (30, 40, 3) and color.dtype == np.uint8
    with pytest.raises(io.ImageReadError, match="colour image"):
        io.read_depth(paths["color"])


def test_failed_write_leaves_no_file(tmp_path):
    depth = np.zeros((4, 4), np.float32)
    paths = {"npy": tmp_path / "a.npy", "exr": tmp_path / "missing-dir-is-a-file" / "a.exr"}
    (tmp_path / "missing-dir-is-a-file").write_text("I am a file, not a folder")
    with pytest.raises(OSError):
        io.write_depth_files(depth, paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["missing-dir-is-a-file"]


def test_read_image_8_and_16_bit(tmp_path):
    rgb8 = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgb8[..., ::-1])
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), rgb8.astype(np.float64) / 255)
    rgb16 = (rgb8.astype(np.uint16) * 257 + 3)
    cv2.imwrite(str(tmp_path / "b.png"), rgb16[..., ::-1])
    np.testing.assert_array_equal(io.read_image(tmp_path / "b.png"), rgb16.astype(np.float64) / 65535)
    gray = rgb8[..., 0]
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert io.read_image(tmp_path / "g.png").shape == (10, 12, 3)


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(io.ImageReadError, match="bad.png"):
        io.read_image(bad)
    with pytest.raises(io.ImageReadError, match="no such file"):
        io.read_image(tmp_path / "absent.jpg")


def test_pfm_is_read_bottom_up(tmp_path):
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    with open(tmp_path / "d.pfm", "wb") as f:
        f.write(b"Pf\n3 2\n-1.0\n")
        f.write(np.flipud(data).tobytes())
    np.testing.assert_array_equal(io.read_depth(tmp_path / "d.pfm"), data)
