"""The synthetic checkpoints are the ones the golden outputs were computed with (digests in the manifests)."""
import numpy as np
import pytest
import torch

import synthetic_weights as sw


@pytest.mark.parametrize("name", sw.names())
def test_state_dict_digest_matches_manifest(name):
    sd = sw.synthetic_state_dict(name, seed=0)
    manifest = sw.load_manifest(name)
    assert list(sd) == [entry[0] for entry in manifest["tensors"]]
    assert len(sd) == manifest["header"]["n_entries"]
    assert sw.digest(sd) == sw.manifest_digest(name)


def test_values_follow_rules_and_seed():
    manifest = sw.load_manifest("merge_net")
    key, shape, dtype, rule = manifest["tensors"][0]
    assert rule == "normal:0.02"
    a = sw.make_array(key, tuple(shape), dtype, rule, seed=0)
    assert a.dtype == np.float32 and a.shape == tuple(shape)
    assert abs(float(a.std()) - 0.02) < 0.002
    assert np.array_equal(a, sw.make_array(key, tuple(shape), dtype, rule, seed=0))
    assert not np.array_equal(a, sw.make_array(key, tuple(shape), dtype, rule, seed=1))
    # each key has its own generator: another key with the same rule gets other values
    b = sw.make_array(key + "x", tuple(shape), dtype, rule, seed=0)
    assert not np.array_equal(a, b)
    u = sw.make_array("k", (1000,), "float32", "uniform:0,0.5")
    assert u.min() >= 0 and u.max() <= 0.5
    s = sw.make_array("k", (1000,), "float32", "uniform:0.25")
    assert s.min() >= -0.25 and s.max() <= 0.25 and s.min() < 0
    n = sw.make_array("k", (3,), "int64", "zeros")
    assert n.dtype == np.int64 and not n.any()
    with pytest.raises(ValueError, match="unknown init rule"):
        sw.make_array("k", (3,), "float32", "gauss:1")


def test_sgr_file_has_official_layout(tmp_path):
    path = sw.write_checkpoint("sgr", tmp_path)
    assert path == tmp_path / "sgr.pth.tar"
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert list(obj) == ["state_dict"]
    assert all(k.startswith("module.") for k in obj["state_dict"])
    assert sw.digest(obj["state_dict"]) == sw.manifest_digest("sgr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sgr.pth.tar"]  # no temporary file left


def test_plain_file_and_seed(tmp_path):
    path = sw.write_checkpoint("depth_anything_v2_vits", tmp_path, seed=3)
    assert path.name == "depth_anything_v2_vits.pth"
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert sw.digest(sd) == sw.digest(sw.synthetic_state_dict("depth_anything_v2_vits", seed=3))
    assert sw.digest(sd) != sw.manifest_digest("depth_anything_v2_vits")


def test_file_names_and_wrappers_match_manifest_headers():
    for name in sw.names():
        header = sw.load_manifest(name)["header"]
        file_name, wrapper = sw.FILES[name]
        assert header["synthetic_file"].split()[0] == file_name
        layout = header["synthetic_layout"]
        if wrapper:
            assert layout.startswith("{" + repr(wrapper) + ":")
        else:
            assert layout.startswith("plain state_dict")


def test_unknown_name():
    with pytest.raises(ValueError, match="known: merge_net"):
        sw.synthetic_state_dict("midas_v3")

