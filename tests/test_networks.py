"""Networks: strict loading of the official checkpoint layouts, forward shapes, input preparation, errors.

The checkpoints are the deterministic synthetic ones (tests/synthetic_weights.py), written to disk in
the official layouts and loaded through the same code path as the official files.
"""
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from boost_core.networks import registry
from boost_core.networks.checkpoint import CheckpointError, load_strict, read_state_dict
from boost_core.networks.estimate import input_size, prepare_input, single_estimate
from synthetic_weights import synthetic_state_dict

REPO = Path(__file__).resolve().parents[1]
WEIGHTS_OF = {"midas_v2": "midas_v2", "leres": "leres", "sgr": "sgr"}  # registry net -> synthetic checkpoint


@pytest.fixture(scope="session")
def models(checkpoints):
    """name -> loaded model (eval mode, CPU), loaded once for the forward tests.

    ``checkpoints(name)`` (tests/conftest.py) writes the synthetic file once per session and returns its path.
    """
    loaded = {net: registry.load_base(registry.get(net), checkpoints(w)) for net, w in WEIGHTS_OF.items()}
    loaded["merge_net"] = registry.load_merge_net(checkpoints("merge_net"))
    return loaded


@pytest.fixture
def scratch(tmp_path):
    """A folder for extra (large) files, removed after the test."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3))


# ---------------------------------------------------------------------------- strict loading


@pytest.mark.parametrize("net_name", list(WEIGHTS_OF))
def test_base_networks_load_their_checkpoints_strictly(models, net_name):
    model = models[net_name]
    assert not model.training
    expected = synthetic_state_dict(WEIGHTS_OF[net_name])
    if net_name == "sgr":  # the official file's keys carry DataParallel's prefix
        assert all(k.startswith("module.") for k in expected)
        expected = {k[len("module."):]: v for k, v in expected.items()}
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" and not p.requires_grad
               for p in model.parameters())


def test_merge_net_loads_strictly(models):
    model = models["merge_net"]
    expected = synthetic_state_dict("merge_net")
    got = model.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    # norm "none": the only bias is the outermost ConvTranspose2d's
    assert [k for k in got if k.endswith("bias")] == ["model.model.3.bias"]


# ---------------------------------------------------------------------------- forward shapes


def test_midas_forward_shape(models):
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        y = models["midas_v2"](x)
    assert y.shape == (1, 64, 96) and y.dtype == torch.float32
    assert bool(torch.isfinite(y).all()) and float(y.min()) >= 0  # final ReLU: non-negative


@pytest.mark.parametrize("net_name", ["leres", "sgr"])
def test_fusion_decoder_networks_forward_shape(models, net_name):
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        y = models[net_name](x)
    assert y.shape == (1, 1, 64, 96) and y.dtype == torch.float32
    assert bool(torch.isfinite(y).all()) and float(y.max() - y.min()) > 0


def test_merge_net_forward(models):
    x = torch.rand(1, 2, 1024, 1024) * 2 - 1
    with torch.inference_mode():
        y = models["merge_net"](x)
    assert y.shape == (1, 1, 1024, 1024) and y.dtype == torch.float32
    assert float(y.min()) >= -1 and float(y.max()) <= 1 and float(y.max() - y.min()) > 0


# ---------------------------------------------------------------------------- in-place ReLU quirks
# The reference's residual branches start with an in-place ReLU on a tensor the skip term also reads
# (SPEC part two, section F). These tests run the reference's literal op sequence, in-place ReLUs
# included, on small random modules and compare with ours.


def test_residual_conv_unit_rectifies_its_skip_term():
    from boost_core.networks.models.midas_v2 import ResidualConvUnit

    torch.manual_seed(0)
    rcu = ResidualConvUnit(8).eval()
    x = torch.randn(1, 8, 12, 12)
    relu = nn.ReLU(inplace=True)

    def reference(x):
        out = relu(x)  # in place: x itself is rectified
        out = rcu.conv2(relu(rcu.conv1(out)))
        return out + x

    with torch.no_grad():
        ours = rcu(x.clone())
        ref = reference(x.clone())
        literal = rcu.conv2(torch.relu(rcu.conv1(torch.relu(x)))) + x  # the formula without the quirk
    assert torch.allclose(ours, ref, atol=1e-6)
    assert not torch.allclose(ours, literal, atol=1e-3)


def test_ftb_rectifies_its_skip_term():
    from boost_core.networks.layers.fusion_decoder import FTB

    torch.manual_seed(0)
    ftb = FTB(4, 8).eval()
    ftb.conv_branch[2].running_mean.uniform_(-0.1, 0.1)
    x = torch.randn(1, 4, 10, 10)
    branch = nn.Sequential(nn.ReLU(inplace=True), *list(ftb.conv_branch)[1:])

    def reference(x):
        x = ftb.conv1(x)
        x = x + branch(x)  # the branch's in-place ReLU rewrites x before the add reads it
        return torch.relu(x)

    with torch.no_grad():
        ours = ftb(x)
        ref = reference(x)
        c = ftb.conv1(x)
        literal = torch.relu(c + branch(c.clone()))
    assert torch.allclose(ours, ref, atol=1e-6)
    assert not torch.allclose(ours, literal, atol=1e-3)


# ---------------------------------------------------------------------------- checkpoint layouts and errors


def test_module_prefixed_leres_file_loads(checkpoints, scratch):
    sd = read_state_dict(checkpoints("leres"))
    path = scratch / "res101.pth"
    torch.save({"depth_model": {"module." + k: v for k, v in sd.items()}, "epoch": 7}, path)
    model = registry.load_base(registry.get("leres"), path)
    key = "depth_model.decoder_modules.outconv.adapt_conv.3.weight"
    assert torch.equal(model.state_dict()[key], sd[key])


def test_midas_file_with_model_and_optimizer_loads(checkpoints, scratch):
    sd = read_state_dict(checkpoints("midas_v2"))
    path = scratch / "model.pt"
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}},
               path)
    model = registry.load_base(registry.get("midas_v2"), path)
    key = "scratch.output_conv.4.weight"
    assert torch.equal(model.state_dict()[key], sd[key])


def test_sgr_file_without_num_batches_tracked_loads(checkpoints, scratch):
    # a torch 0.4.0 save has no BatchNorm num_batches_tracked buffers (345 instead of 406 entries)
    obj = torch.load(checkpoints("sgr"), map_location="cpu", weights_only=True)
    sd = {k: v for k, v in obj["state_dict"].items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == 345
    path = scratch / "model.pth.tar"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    model = registry.load_base(registry.get("sgr"), path)
    assert torch.equal(model.state_dict()["decoder.conv1.weight"], sd["module.decoder.conv1.weight"])


def test_missing_file(tmp_path):
    path = tmp_path / "model-f46da743.pt"
    with pytest.raises(CheckpointError) as err:
        registry.load_base(registry.get("midas_v2"), path)
    message = str(err.value)
    assert str(path) in message and "MiDaS v2" in message and "does not exist" in message
    assert "python -m boost_core weights download midas_v2" in message


def test_truncated_file(checkpoints, scratch):
    path = scratch / "latest_net_G.pth"
    with open(checkpoints("merge_net"), "rb") as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(CheckpointError) as err:
        registry.load_merge_net(path)
    message = str(err.value)
    assert str(path) in message and "merge network" in message and "truncated" in message
    assert "weights download merge_net" in message


def test_foreign_checkpoint(checkpoints):
    with pytest.raises(CheckpointError) as err:
        registry.load_base(registry.get("midas_v2"), checkpoints("merge_net"))
    message = str(err.value)
    assert str(checkpoints("merge_net")) in message and "MiDaS v2" in message
    assert "666 missing keys such as pretrained.layer1.0.weight, pretrained.layer1.1.weight" in message
    assert "21 unexpected such as model.model.0.weight" in message
    assert "--net midas_v2" in message


def test_leres_and_sgr_files_are_not_interchangeable(checkpoints):
    with pytest.raises(CheckpointError, match="missing keys.*unexpected.*--net sgr"):
        registry.load_base(registry.get("sgr"), checkpoints("leres"))


def test_shape_mismatch_is_named(checkpoints):
    from boost_core.networks.models import midas_v2

    sd = read_state_dict(checkpoints("midas_v2"))
    sd["scratch.output_conv.4.weight"] = torch.zeros(2, 32, 1, 1)
    with torch.device("meta"):
        model = midas_v2.build()
    with pytest.raises(CheckpointError) as err:
        load_strict(model, sd, checkpoints("midas_v2"), "MiDaS v2")
    message = str(err.value)
    expected = "shape mismatch for scratch.output_conv.4.weight: file (2, 32, 1, 1) vs model (1, 32, 1, 1)"
    assert expected in message
    assert "missing" not in message and "unexpected" not in message


class _NotATensor:
    pass


def test_unsafe_and_odd_files_are_refused(tmp_path):
    cases = {
        "pickle.pth": ({"state_dict": _NotATensor()}, "refused: not a plain weights file"),
        "list.pth": ([torch.zeros(2)], "holds a list, not a state_dict"),
        "no_sd.pth": ({"epoch": 3, "args": {"lr": 0.1}}, "top-level keys are 'epoch', 'args'"),
    }
    for name, (obj, expected) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=expected):
            read_state_dict(tmp_path / name, network_title="SGR")
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="corrupt"):
        read_state_dict(tmp_path / "noise.pth")


def test_prefix_is_stripped_only_when_every_key_has_it(tmp_path):
    torch.save({"module.a": torch.ones(1), "b": torch.ones(1)}, tmp_path / "mixed.pth")
    assert set(read_state_dict(tmp_path / "mixed.pth")) == {"module.a", "b"}
    torch.save({"state_dict": {"module.a": torch.ones(1), "module.b": torch.ones(1)}}, tmp_path / "dp.pth")
    assert set(read_state_dict(tmp_path / "dp.pth")) == {"a", "b"}


# ---------------------------------------------------------------------------- input preparation


def test_midas_input_size_rule():
    midas = registry.get("midas_v2")
    assert input_size(midas, (480, 640), 960) == (704, 960)  # 720/32 = 22.5 rounds half to even -> 22
    assert input_size(midas, (400, 600), 384) == (256, 384)
    assert input_size(midas, (400, 600), 576) == (384, 576)
    assert input_size(midas, (600, 400), 576) == (576, 384)
    assert input_size(midas, (1000, 1100), 384) == (352, 384)
    # 1010/32 = 31.56 rounds up to 1024 > 1010, so the width falls back to the floor, 992
    assert input_size(midas, (480, 640), 1010) == (768, 992)
    assert input_size(midas, (400, 600), 3000) == (1056, 1568)  # clamped to 1568 first


def test_square_input_size_and_errors():
    leres = registry.get("leres")
    assert input_size(leres, (400, 600), 448) == (448, 448)
    assert input_size(leres, (400, 600), 1728) == (1568, 1568)
    with pytest.raises(ValueError, match="multiple of 32"):
        input_size(leres, (400, 600), 450)


def test_prepare_input_channel_order_and_normalisation():
    image = np.empty((30, 50, 3))
    image[...] = (0.2, 0.5, 0.8)  # constant colour: every resize keeps it
    mean, std = np.array(registry.IMAGENET_MEAN), np.array(registry.IMAGENET_STD)
    for name, order in (("midas_v2", [0, 1, 2]), ("sgr", [0, 1, 2]), ("leres", [2, 1, 0])):
        x = prepare_input(registry.get(name), image, 64)
        assert x.dtype == torch.float32 and x.shape[:2] == (1, 3)
        want = (np.array([0.2, 0.5, 0.8])[order] - mean) / std
        assert np.allclose(x[0, :, 5, 5].numpy(), want, atol=1e-5), name
    assert prepare_input(registry.get("leres"), image, 64).shape == (1, 3, 64, 64)
    assert prepare_input(registry.get("midas_v2"), image, 64).shape == (1, 3, 32, 64)


def test_single_estimate_outputs(models):
    image = _rgb(50, 70)
    for name in ("midas_v2", "leres", "sgr"):
        net = registry.get(name)
        out = single_estimate(net, models[name], image, 64)
        assert out.shape == (50, 70) and out.dtype == np.float32 and np.isfinite(out).all(), name
        if name == "midas_v2":  # normalised after resizing back: exactly [0, 1]
            assert out.min() == 0 and out.max() == 1
        elif name == "sgr":  # normalised at network size, then cubic: about [0, 1]
            assert -0.1 < out.min() < 0.1 and 0.9 < out.max() < 1.1
        else:  # LeReS: raw depth, the same as resizing the raw network output back
            import cv2

            with torch.inference_mode():
                raw = models[name](prepare_input(net, image, 64))[0, 0].numpy()
            assert np.array_equal(out, cv2.resize(raw, (70, 50), interpolation=cv2.INTER_CUBIC))


def test_single_estimate_constant_map_gives_zeros():
    class AllZero(nn.Module):  # what MiDaS's final ReLU gives when it clips everything
        def forward(self, x):
            return torch.zeros((1, x.shape[2], x.shape[3]))

    for name in ("midas_v2", "sgr"):  # normalised after / before resizing back
        out = single_estimate(registry.get(name), AllZero(), _rgb(20, 30), 64)
        assert out.shape == (20, 30) and out.dtype == np.float32 and not out.any()


def test_single_estimate_rejects_non_rgb(models):
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        single_estimate(registry.get("midas_v2"), models["midas_v2"], np.zeros((20, 30)), 64)


# ---------------------------------------------------------------------------- registry as data


def test_registry_entries():
    assert registry.names()[:3] == ["midas_v2", "leres", "sgr"]
    midas, leres, sgr = (registry.get(n) for n in ("midas_v2", "leres", "sgr"))
    assert (midas.receptive_field, leres.receptive_field, sgr.receptive_field) == (384, 448, 448)
    assert (midas.output_kind, leres.output_kind, sgr.output_kind) == ("inverse_depth", "depth",
                                                                       "inverse_depth")
    assert midas.weights == ("midas_v2", "midas_v21")
    assert leres.weights == ("leres",) and sgr.weights == ("sgr",)
    assert midas.input.resize == "keep_aspect_upper_bound" and midas.input.interpolation == "cubic"
    assert leres.input.resize == "square" and leres.input.interpolation == "linear"
    assert leres.input.channel_order == "BGR"
    assert midas.input.channel_order == sgr.input.channel_order == "RGB"
    assert midas.output.normalize and sgr.output.normalize and not leres.output.normalize
    for net in registry.all_networks():
        assert net.max_size == 1568 and net.licence
        assert net.receptive_field % net.input.multiple_of == 0
        assert hasattr(registry.family(net.module), "build")
        with pytest.raises(dataclasses.FrozenInstanceError):
            net.receptive_field = 1


def test_unknown_network_lists_known_names():
    with pytest.raises(ValueError, match="known networks: midas_v2, leres, sgr"):
        registry.get("midas_v3")


def test_registry_import_does_not_import_torch():
    code = "import sys, boost_core.networks.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
