"""Merge-network training (SPEC part two §A): data preparation, the GAN, the schedule, checkpoints the engine loads.

Steps run at a small working size (64) so that they take seconds on a CPU; the reference size 1024 is checked
for its checkpoint layout (the engine loads it strictly and merges with it), not trained here.
"""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from paths import DATA

from boost_core.tools.training import dataset as ds
from boost_core.tools.training.guided_filter import box_sum, guided_filter
from boost_core.tools.training.imresize import imresize, resize_matrix
from boost_core.tools.training.model import Discriminator, MergeGAN, build_generator
from boost_core.tools.training.train import TrainOptions, lr_factor, train

# ---------------------------------------------------------------------------------------------- building blocks

def test_matlab_bicubic_weights_and_antialiasing():
    # halving 4 samples: Keys a=-0.5 widened by 2, at u = 1.5 and 3.5 (1-based), mirrored at the borders
    np.testing.assert_allclose(resize_matrix(4, 2), [[35 / 64, 51 / 128, 13 / 128, -3 / 64],
                                                     [-3 / 64, 13 / 128, 51 / 128, 35 / 64]])
    np.testing.assert_allclose(imresize(np.array([[1.0, 2.0, 3.0, 4.0]]), (1, 2)), [[1.4609375, 3.5390625]])
    # doubling: plain Keys kernel; output 4 (1-based) samples the input at u = 4/2 + (1 - 1/2)/2 = 2.25
    np.testing.assert_allclose(resize_matrix(4, 8)[3], [-0.0703125, 0.8671875, 0.2265625, -0.0234375])
    flat = np.full((30, 40), 1234, np.uint16)
    out = imresize(flat, (11, 13))
    assert out.dtype == np.uint16 and out.shape == (11, 13) and np.all(out == 1234)


def test_matlab_bicubic_equals_pillow_away_from_borders():
    from PIL import Image

    image = np.random.default_rng(0).random((90, 70)).astype(np.float32)
    for shape in ((30, 35), (200, 150)):
        ours = imresize(image, shape)
        pillow = np.asarray(Image.fromarray(image, mode="F").resize(shape[::-1], Image.BICUBIC))
        np.testing.assert_allclose(ours[12:-12, 12:-12], pillow[12:-12, 12:-12], atol=1e-6)


def test_guided_filter():
    x = np.random.default_rng(1).random((40, 30))
    reference_box = cv2.boxFilter(x, -1, (9, 9), normalize=False, borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(box_sum(x, 4), reference_box, atol=1e-10)
    np.testing.assert_allclose(guided_filter(x, x, 5, 1e-8), x, atol=1e-6)  # a map guided by itself
    np.testing.assert_allclose(guided_filter(x, np.full_like(x, 0.3), 5), 0.3, atol=1e-12)  # flat input stays
    # edges come from the guide, levels from the input: a step guide puts a step into a filtered ramp
    step = np.zeros((20, 40))
    step[:, 20:] = 1.0
    ramp = np.tile(np.linspace(0, 1, 40), (20, 1))
    jumps = np.diff(guided_filter(step, ramp, 8, 1e-8)[0])
    assert jumps[19] > 5 * (1 / 39) and np.all(np.delete(jumps, 19) < 1 / 39)


def test_crop_grids_of_the_reference():
    def count(shape, crops):
        return [len(ds.crop_grid(*shape, spec)) for spec in ds.parse_crops(crops, shape)]

    assert count((480, 640), "ibims") == [3, 8, 40]  # 51 crops per IBims image (SPEC §A.3)
    assert count((480, 640), "auto") == [3, 8, 40]
    assert sum(count((1988, 2880), "middlebury")) == 94
    grid = ds.crop_grid(480, 640, ds.parse_crops("ibims")[0])  # side 480, stride 70: columns 240, 310, 380
    assert grid == [(0, 0, 0, 0), (1, 0, 0, 70), (2, 0, 0, 140)]
    assert ds.crop_grid(480, 640, ds.parse_crops("ibims")[1])[:2] == [(100, 100, 0, 0), (100, 101, 80, 0)]
    assert ds.crop_name("room", 100, 101) == "room_&100_101&.png"
    with pytest.raises(ValueError, match="SIDE:STRIDE"):
        ds.parse_crops("480x70")


def test_linear_schedule_of_the_reference():
    assert lr_factor(1, 100, 100) == 1 and lr_factor(99, 100, 100) == 1
    assert lr_factor(100, 100, 100) == pytest.approx(100 / 101)
    assert lr_factor(150, 100, 100) == pytest.approx(50 / 101)
    assert lr_factor(200, 100, 100) == 0  # the reference's last epoch does not learn


def test_discriminator_is_the_70px_patchgan():
    d = Discriminator()
    assert sum(p.numel() for p in d.parameters()) == 2_763_841
    assert sorted(d.state_dict()) == sorted(["model.0.weight", "model.0.bias", "model.2.weight", "model.5.weight",
                                             "model.8.weight", "model.11.weight", "model.11.bias"])
    with torch.no_grad():
        assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 1024 gives 126 x 126 the same way
    with pytest.raises(ValueError, match="power of two"):
        build_generator(100)


# ---------------------------------------------------------------------------------------------- data

def _scene(height, width, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / height
    return 0.5 + 0.3 * np.sin(5 * x + 6 * rng.random()) * np.cos(4 * y + 6 * rng.random()) + 0.2 * (x > rng.random())


def _tiny_dataset(root, count=4, side=64):
    """outer = blurred target, inner = target + stripes, gtfake = target: 16-bit PNGs."""
    for i in range(count):
        gt = _scene(side, side, i)
        maps = {"gtfake": gt, "outer": cv2.GaussianBlur(gt, (0, 0), 5),
                "inner": gt + 0.05 * np.sin(np.arange(side) * 0.8)[None, :]}
        for folder, value in maps.items():
            value = (value - value.min()) / (value.max() - value.min())
            ds.write_png(root / "train" / folder / f"s{i}.png", np.round(value * 65535).astype(np.uint16))
    return root


def test_dataset_reads_samples_as_the_reference(tmp_path):
    root = _tiny_dataset(tmp_path / "data", count=2)
    plain = ds.MergeDataset(root, "train", guided=False)
    item = plain[1]
    raw = cv2.imread(str(root / "train" / "outer" / "s1.png"), cv2.IMREAD_UNCHANGED) / 65536.0
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * 2 - 1
    assert item["name"] == "s1.png" and item["outer"].shape == (1, 64, 64) and item["outer"].dtype == torch.float32
    np.testing.assert_allclose(item["outer"][0].numpy(), expected, atol=1e-6)
    guided = ds.MergeDataset(root, "train", gf_radius=8)  # training: guided filters on inner and outer
    assert guided.guided and not np.allclose(guided[1]["inner"], item["inner"])
    assert float(guided[1]["inner"].min()) == -1 and float(guided[1]["inner"].max()) == 1
    (root / "train" / "inner" / "s1.png").unlink()
    with pytest.raises(ValueError, match="paired by name"):
        ds.MergeDataset(root, "train")


# ---------------------------------------------------------------------------------------------- training

def test_a_few_steps_lower_the_l1_loss_and_training_resumes(tmp_path, engine_env):
    from boost_core.networks.checkpoint import load_strict, read_state_dict

    root = _tiny_dataset(tmp_path / "data", count=2, side=32)
    checkpoints = tmp_path / "ckpt"
    fixed = torch.utils.data.default_collate([ds.MergeDataset(root, "train", gf_radius=8)[i] for i in range(2)])
    before = MergeGAN(32, seed=0).l1(fixed)  # the initial weights of a seed-0 run

    run = subprocess.run([sys.executable, "-m", "boost_core", "train", "--dataroot", str(root), "--checkpoints",
                          str(checkpoints), "--size", "32", "--epochs", "2", "--epochs-decay", "2", "--seed", "0",
                          "--gf-radius", "8", "--max-steps", "4", "--print-freq", "2", "--save-epoch-freq", "2",
                          "--threads", "2", "--device", "cpu"],
                         capture_output=True, text=True, env=engine_env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "experiments only" in run.stderr  # size 32 is not the engine's merge net
    assert {p.name for p in checkpoints.iterdir()} == {"latest_net_G.pth", "latest_net_D.pth", "latest_state.pth",
                                                       "2_net_G.pth", "2_net_D.pth", "loss_log.txt"}
    generator = build_generator(32)
    load_strict(generator, read_state_dict(checkpoints / "latest_net_G.pth"), checkpoints / "latest_net_G.pth",
                "generator")
    gan = MergeGAN(32)
    gan.netG = generator
    after = gan.l1(fixed)
    assert after < before
    with torch.no_grad():  # the trained generator merges a (low, high) pair
        merged = generator(torch.cat([fixed["outer"], fixed["inner"]], 1)[:1])
    assert merged.shape == (1, 1, 32, 32) and float(merged.abs().max()) <= 1

    state = torch.load(checkpoints / "latest_state.pth", weights_only=True)
    assert (state["epochs_done"], state["steps"], state["size"]) == (2, 4, 32)
    log = (checkpoints / "loss_log.txt").read_text().splitlines()
    assert log[0].startswith("(epoch: 1, iters: 2, lr factor: 1.0000) G_GAN:") and "G_L1" in log[0]

    result = train(TrainOptions(root, checkpoints, size=32, n_epochs=2, n_epochs_decay=2, seed=0, gf_radius=8,
                                max_steps=6, print_freq=100, resume=True), log=lambda line: None)
    assert (result.epochs_done, result.steps, result.steps_this_run) == (3, 6, 2)
    state = torch.load(checkpoints / "latest_state.pth", weights_only=True)
    assert (state["epochs_done"], state["steps"]) == (3, 6)
    assert state["optimizer_G"]["state"][0]["step"].item() == 6  # Adam's state carried over the resume
    with pytest.raises(ValueError, match="--size 32"):
        train(TrainOptions(root, checkpoints, size=64, resume=True), log=lambda line: None)


def test_the_engine_loads_the_generator_strictly_and_merges(tmp_path, engine_env):
    from boost_core.tools import byod
    from boost_core.networks import registry
    from boost_core.networks.checkpoint import CheckpointError

    root = _tiny_dataset(tmp_path / "data", count=1)
    checkpoints = tmp_path / "mergemodel"
    run = subprocess.run([sys.executable, "-m", "boost_core", "train", "--dataroot", str(root), "--checkpoints",
                          str(checkpoints), "--max-steps", "0", "--seed", "1", "--threads", "2", "--device", "cpu"],
                         capture_output=True, text=True, env=engine_env, timeout=300)
    assert run.returncode == 0, run.stderr
    saved = torch.load(checkpoints / "latest_net_G.pth", weights_only=True)
    official = json.loads((DATA / "manifests" / "merge_net.json").read_text())["tensors"]
    assert [(k, list(v.shape)) for k, v in saved.items()] == [(k, shape) for k, shape, _, _ in official]
    assert all(v.device.type == "cpu" for v in saved.values())

    model = registry.load_merge_net(checkpoints / "latest_net_G.pth")  # strict
    from boost_core.algorithm.double_estimation import DepthNetworks

    torch.set_num_threads(2)
    networks = DepthNetworks(net=None, base_model=None, merge_model=model)
    merged = byod.global_merge(_scene(48, 64, 0), _scene(96, 128, 1), networks)
    assert merged.shape == (1024, 1024) and merged.dtype == np.float32 and merged.min() == 0 and merged.max() == 1

    small = tmp_path / "small"
    small.mkdir()
    torch.save(build_generator(64).state_dict(), small / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match="merge network"):
        registry.load_merge_net(small / "latest_net_G.pth")


# ---------------------------------------------------------------------------------------------- preparation

def test_prepare_dataset_from_photos(tmp_path, checkpoints, engine_env):
    from boost_core.networks import registry
    from boost_core.networks.estimate import single_estimate

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(("a.png", "b.jpg")):
        rgb = np.stack([_scene(72, 96, i + k) for k in range(3)], -1)
        cv2.imwrite(str(photos / name), np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    out = tmp_path / "dataset"
    run = subprocess.run([sys.executable, "-m", "boost_core", "prepare-dataset", "--images", str(photos),
                          "--output", str(out), "--net", "midas_v2", "--base-weights", str(checkpoints("midas_v2")),
                          "--low-res", "32", "--high-res", "64", "--crop-size", "32", "--crops", "48:48",
                          "--test-count", "1", "--threads", "2", "--device", "cpu"],
                         capture_output=True, text=True, env=engine_env, timeout=300)
    assert run.returncode == 0, run.stderr
    # 96x72 photo, side 48, stride 48: column centres 24, 72 and row centre 24 -> 2 crops
    for folder in ds.SUBFOLDERS:
        assert sorted(p.name for p in (out / "train" / folder).iterdir()) == ["a_&0_0&.png", "a_&1_0&.png"]
        assert sorted(p.name for p in (out / "test" / folder).iterdir()) == ["b_&0_0&.png", "b_&1_0&.png"]
    assert "2 train and 2 test samples" in run.stdout

    low = cv2.imread(str(out / "whole_low_est" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert low.dtype == np.uint16 and low.shape == (72, 96) and low.min() == 0 and low.max() >= 65534
    outer = cv2.imread(str(out / "train" / "outer" / "a_&1_0&.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(outer, imresize(low[0:48, 48:96], (32, 32)))  # column 1 -> x 48, row 0 -> y 0
    rgb = cv2.cvtColor(cv2.imread(str(out / "train" / "rgb" / "a_&1_0&.png"), cv2.IMREAD_UNCHANGED),
                       cv2.COLOR_BGR2RGB)
    photo16 = cv2.cvtColor(cv2.imread(str(photos / "a.png")), cv2.COLOR_BGR2RGB).astype(np.uint16) * 257
    np.testing.assert_array_equal(rgb, imresize(photo16[0:48, 48:96], (32, 32)))
    net = registry.get("midas_v2")
    model = registry.load_base(net, checkpoints("midas_v2"))
    inner = cv2.imread(str(out / "train" / "inner" / "a_&1_0&.png"), cv2.IMREAD_UNCHANGED)
    torch.set_num_threads(2)  # as the command ran
    expected = ds.quantize16(single_estimate(net, model, (rgb >> 8) / 255.0, 64))
    assert np.abs(inner.astype(np.int64) - expected).max() <= 1  # float rounding may move a truncated level

    # a second run skips the finished photos; other settings need --overwrite
    before = (out / "train" / "inner" / "a_&0_0&.png").stat().st_mtime_ns
    lines = []
    summary = ds.prepare_dataset(photos, out, net, model, low_res=32, high_res=64, crop_size=32, crops="48:48",
                                 test_count=1, log=lines.append)
    assert summary == {"photos": 2, "skipped": 2, "crops": {"train": 2, "test": 2}}
    assert all("already prepared" in line for line in lines)
    assert (out / "train" / "inner" / "a_&0_0&.png").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="other settings"):
        ds.prepare_dataset(photos, out, net, model, low_res=32, high_res=64, crop_size=48, crops="48:48",
                           test_count=1)
