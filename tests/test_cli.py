"""``python -m boost_core`` as a child process: outputs, JSON-lines protocol, exit codes, failures leave nothing."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from boost_core import image_io as io


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two small real photos (downscaled skimage samples) as PNG files."""
    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "chelsea"):
        rgb = getattr(skimage.data, name)()
        small = cv2.resize(rgb, (96, 64), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{name}.png"), small[..., ::-1])
    return folder


def run(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "boost_core", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def weights_args(checkpoints):
    return ["--base-weights", checkpoints("midas_v2"), "--merge-weights", checkpoints("merge_net")]


def test_writes_every_format_and_speaks_json_lines(photos, checkpoints, engine_env, tmp_path):
    out = tmp_path / "out"
    proc = run([photos / "coffee.png", photos / "chelsea.png", "--net", "midas_v2", "--mode", "r0",
                *weights_args(checkpoints), "--output", out, "--format", "png16,exr,npy,color",
                "--progress", "json", "--device", "cpu"], engine_env)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every stdout line is JSON
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[-1]["ok"] == 2 and events[-1]["failed"] == 0
    # the job's peak memory: this process loaded torch and two networks (> 200 MiB); no GPU field on CPU
    assert events[-1]["peak_rss_mib"] > 200 and "cuda_peak_mib" not in events[-1]
    results = [e for e in events if e["event"] == "result"]
    assert [r["image"].endswith(n) for r, n in zip(results, ("coffee.png", "chelsea.png"))] == [True, True]
    assert {"resolution_search", "whole_image", "writing"} <= {e["stage"] for e in events if e["event"] == "stage"}
    for stem in ("coffee", "chelsea"):
        depth = np.load(out / f"{stem}.npy")
        assert depth.shape == (64, 96) and depth.dtype == np.float32 and np.isfinite(depth).all()
        np.testing.assert_array_equal(io.read_depth(out / f"{stem}.exr"), depth)
        np.testing.assert_array_equal(cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED), io.quantize16(depth))
        assert (out / f"{stem}_color.png").is_file()
    assert results[0]["kind"] == "inverse_depth" and results[0]["R"] == 384
    assert results[0]["outputs"]["exr"] == str(out / "coffee.exr")


def test_a_bad_image_fails_alone_and_leaves_no_file(photos, checkpoints, engine_env, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    out = tmp_path / "out"
    proc = run([bad, photos / "coffee.png", "--mode", "r0", *weights_args(checkpoints), "--output", out,
                "--format", "png16,npy"], engine_env)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["coffee.npy", "coffee.png"]


def test_never_overwrites_the_input_or_existing_outputs(photos, checkpoints, engine_env, tmp_path):
    photo = tmp_path / "shot.png"
    photo.write_bytes((photos / "coffee.png").read_bytes())
    before = photo.read_bytes()
    proc = run([photo, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path], engine_env)
    assert proc.returncode == 2 and "would overwrite the input" in proc.stderr  # refused up front (issue 19)
    assert photo.read_bytes() == before
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shot.npy").write_bytes(b"keep me")
    proc = run([photo, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path / "out",
                "--format", "npy"], engine_env)
    assert proc.returncode == 1 and "--overwrite" in proc.stderr
    assert (tmp_path / "out" / "shot.npy").read_bytes() == b"keep me"


def test_wrong_checkpoint_is_a_clear_setup_error(photos, checkpoints, engine_env, tmp_path):
    proc = run([photos / "coffee.png", "--mode", "r0", "--base-weights", checkpoints("merge_net"),
                "--merge-weights", checkpoints("merge_net"), "--output", tmp_path / "o", "--progress", "json"],
               engine_env)
    assert proc.returncode == 2
    last = [json.loads(line) for line in proc.stdout.splitlines()]
    error = next(e for e in last if e["event"] == "error")
    assert "merge_net.pth" in error["message"]
    assert not (tmp_path / "o").exists()


def test_bad_arguments_exit_2(engine_env, tmp_path):
    proc = run(["x.png", "--mode", "nonsense", "--output", tmp_path], engine_env)
    assert proc.returncode == 2 and "nonsense" in proc.stderr


def test_single_mode_matches_the_official_depth_anything_v2_pass(checkpoints, engine_env, tmp_path):
    """``--mode single`` runs the network's own pass (no merge network needed) and matches its golden."""
    from golden import assert_matches, final

    photo = tmp_path / "chelsea.png"
    cv2.imwrite(str(photo), skimage.data.chelsea()[..., ::-1])
    proc = run([photo, "--net", "depth_anything_v2_small", "--mode", "single", "--base-weights",
                checkpoints("depth_anything_v2_vits"), "--output", tmp_path / "out", "--format", "npy",
                "--progress", "json"], engine_env)
    assert proc.returncode == 0, proc.stderr
    result = next(json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line)
    assert result["kind"] == "inverse_depth" and result["mode"] == "single"
    assert_matches(np.load(tmp_path / "out" / "chelsea.npy"), final("chelsea_dav2s_single"))


def test_plain_and_batched_final_give_the_same_map(photos, checkpoints, engine_env, tmp_path):
    """--plain (no BatchNorm folding, NCHW, default heap) and --batch 2 change speed, not the result (rounding)."""
    import skimage.data as data

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.resize(data.astronaut(), (400, 300), interpolation=cv2.INTER_AREA)[..., ::-1])
    common = [photo, "--mode", "final", "--max-res", "900", *weights_args(checkpoints), "--format", "npy"]
    plain = run([*common, "--output", tmp_path / "plain", "--plain"], engine_env)
    fast = run([*common, "--output", tmp_path / "fast", "--batch", "2"], engine_env)
    assert plain.returncode == 0 and fast.returncode == 0, plain.stderr + fast.stderr
    a, b = np.load(tmp_path / "plain" / "astronaut.npy"), np.load(tmp_path / "fast" / "astronaut.npy")
    assert np.abs(a - b).max() <= 1e-4 * (a.max() - a.min())
