"""Boost Your Own Depth (`python -m boost_core merge`) and the R20 calculator (`python -m boost_core resolution`).

The merge network is the deterministic synthetic checkpoint (seed 0) in the official layout; one merge at
1024x1024 takes a few seconds on a CPU, so the tests merge as few times as they can.
"""

import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from paths import DATA

from boost_core.tools import byod
from boost_core.image_io import read_depth, write_exr


def _scene(height, width, seed=0):
    """A smooth depth-like map with some detail, float64 in [0, 1]."""
    rows, cols = np.mgrid[0:height, 0:width] / max(height, width)
    rng = np.random.default_rng(seed)
    base = 0.5 + 0.3 * np.sin(4 * cols + 1) * np.cos(3 * rows) + 0.15 * rows
    detail = 0.03 * cv2.GaussianBlur(rng.standard_normal((height, width)), (0, 0), 1.0)
    out = base + detail
    return (out - out.min()) / (out.max() - out.min())


@pytest.fixture(scope="module")
def networks(checkpoints):
    import torch

    torch.set_num_threads(2)
    return byod.load_merge_network(checkpoints("merge_net"), device="cpu")


@pytest.fixture()
def inputs(tmp_path):
    low = np.round(_scene(48, 64) * 65535).astype(np.uint16)
    low_path, high_path = tmp_path / "scene_low.png", tmp_path / "scene_high.exr"
    cv2.imwrite(str(low_path), low)
    write_exr(high_path, _scene(96, 128, seed=1).astype(np.float32) * 3.0 + 1.0)  # any value range
    return low_path, high_path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _merge_cmd(*args):
    return [sys.executable, "-m", "boost_core", "merge", "--threads", "2", "--device", "cpu", *map(str, args)]


def test_merge_command_writes_the_library_result(tmp_path, inputs, networks, checkpoints, engine_env):
    low_path, high_path = inputs
    before = {p: _digest(p) for p in inputs}
    out = tmp_path / "out" / "merged.npy"
    run = subprocess.run(_merge_cmd("--low", low_path, "--high", high_path, "--output", out,
                                    "--merge-weights", checkpoints("merge_net")),
                         capture_output=True, text=True, env=engine_env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert {p: _digest(p) for p in inputs} == before  # inputs untouched
    merged = np.load(out)
    assert merged.dtype == np.float32 and merged.shape == (48, 64)  # the low-resolution map's size
    # the reference's operator: min-max output of the network at 1024, then cubic to the low map's size
    square = byod.global_merge(read_depth(low_path), read_depth(high_path), networks)
    assert square.shape == (1024, 1024) and square.min() == 0 and square.max() == 1
    np.testing.assert_allclose(merged, cv2.resize(square, (64, 48), interpolation=cv2.INTER_CUBIC), atol=1e-5)
    assert [p.name for p in out.parent.iterdir()] == ["merged.npy"]  # no temp file left behind


def test_sixteen_bit_input_is_read_at_full_precision(tmp_path, networks):
    low = np.round(_scene(48, 64) * 65535).astype(np.uint16)
    finer = low ^ np.uint16(0x5A)  # differs only below 8 bits
    assert np.array_equal(low >> 8, finer >> 8) and not np.array_equal(low, finer)
    high = tmp_path / "high.png"
    cv2.imwrite(str(high), np.round(_scene(96, 128, seed=1) * 65535).astype(np.uint16))
    paths = []
    for name, data in (("a.png", low), ("b.png", finer)):
        cv2.imwrite(str(tmp_path / name), data)
        paths.append(tmp_path / name)
    a = byod.merge_files(paths[0], high, networks, "1024")
    b = byod.merge_files(paths[1], high, networks, "1024")
    assert a.shape == (1024, 1024)
    assert np.abs(a - b).max() > 1e-6  # an 8-bit reader (the reference's) would have seen identical inputs


def test_merge_refuses_to_write_over_an_input(tmp_path, inputs, engine_env):
    low_path, high_path = inputs
    before = _digest(low_path)
    for target in (low_path, tmp_path / "." / low_path.name):
        run = subprocess.run(_merge_cmd("--low", low_path, "--high", high_path, "--output", target,
                                        "--merge-weights", tmp_path / "not-needed.pth"),
                             capture_output=True, text=True, env=engine_env, timeout=120)
        assert run.returncode == 2
        assert "would overwrite an input file" in run.stderr
    assert _digest(low_path) == before
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    run = subprocess.run(_merge_cmd("--low", low_path, "--high", high_path, "--output", existing),
                         capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 2 and "--overwrite" in run.stderr and existing.read_bytes() == b"keep me"
    run = subprocess.run(_merge_cmd("--low", low_path, "--high", high_path, "--output", tmp_path / "m.jpg"),
                         capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 2 and ".png, .exr, .npy" in run.stderr


def test_merge_folders_paired_by_stem(tmp_path, checkpoints, engine_env):
    data = tmp_path / "data"
    (data / "low-res").mkdir(parents=True)
    (data / "high-res").mkdir()
    cv2.imwrite(str(data / "low-res" / "room.png"), np.round(_scene(40, 30) * 65535).astype(np.uint16))
    np.save(data / "high-res" / "room.npy", _scene(80, 60, seed=2).astype(np.float32))
    cv2.imwrite(str(data / "low-res" / "alone.png"), np.round(_scene(40, 30, 3) * 255).astype(np.uint8))
    out = tmp_path / "merged"
    run = subprocess.run(_merge_cmd("--data-dir", data, "--output", out, "--format", "png16", "--json",
                                    "--output-size", "1024", "--merge-weights", checkpoints("merge_net")),
                         capture_output=True, text=True, env=engine_env, timeout=300)
    assert run.returncode == 1  # "alone" has no high-res partner
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error", "result", "done"]
    assert events[0]["image"] == "alone" and "no high-res map" in events[0]["message"]
    assert events[1]["outputs"] == {"png16": str(out / "room.png")} and events[1]["shape"] == [1024, 1024]
    written = cv2.imread(str(out / "room.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape == (1024, 1024) and written.max() >= 65534
    assert sorted(p.name for p in out.iterdir()) == ["room.png"]


def test_merge_rejects_maps_without_depth(networks):
    flat = np.full((20, 20), 0.5, np.float32)
    with pytest.raises(byod.MergeInputError, match="low-resolution map is constant"):
        byod.global_merge(flat, _scene(20, 20), networks)
    broken = _scene(20, 20)
    broken[3, 3] = np.nan
    with pytest.raises(byod.MergeInputError, match="high-resolution map contains non-finite"):
        byod.global_merge(_scene(20, 20), broken, networks)


def test_missing_merge_weights_name_the_fix(tmp_path, inputs, engine_env):
    low_path, high_path = inputs
    run = subprocess.run(_merge_cmd("--low", low_path, "--high", high_path, "--output", tmp_path / "m.png",
                                    "--models-dir", tmp_path / "empty-models"),
                         capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 2 and "--merge-weights" in run.stderr
    assert not (tmp_path / "m.png").exists()


def test_resolution_calculator_matches_the_reference_r20(tmp_path, engine_env):
    import skimage.data

    golden = json.loads((DATA / "golden" / "coffee_midas_R20.json").read_text())
    image = tmp_path / "coffee.png"
    cv2.imwrite(str(image), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    run = subprocess.run([sys.executable, "-m", "boost_core", "resolution", str(image), "--net", "midas_v2",
                          "--json"], capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["R"] == golden["R_x"] and result["receptive_field"] == golden["receptive_field"]
    assert result["patch_scale"] == pytest.approx(golden["patch_scale"], abs=1e-12)
    run = subprocess.run([sys.executable, "-m", "boost_core", "resolution", str(image), "--receptive-field", "384"],
                         capture_output=True, text=True, env=engine_env, timeout=120)
    assert run.returncode == 0 and f"R20 = {golden['R_x']}" in run.stdout
