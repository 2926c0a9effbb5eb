"""Deterministic synthetic checkpoints in the official file layouts, for tests.

The trained weights cannot be shipped or downloaded in tests, so every network is filled with
reproducible pseudo-random values instead. This module reproduces the shared test kit's
``make_checkpoints.py`` exactly (same manifests, same generator rule, same digest), so the
golden outputs computed by the reference implementation with those weights apply to ours.

Manifests (copied verbatim into ``tests/data/manifests/``) list, per state_dict key and in the
official key order: the key, its shape, its dtype and an init rule:

* ``"zeros"`` / ``"ones"``;
* ``"normal:S"``: N(0, S);
* ``"uniform:B"``: U(-B, B); ``"uniform:LO,HI"``: U(LO, HI).

Values of one key come from a fresh ``numpy.random.default_rng([seed, zlib.crc32(key)])``, drawn
in float64 and cast to the key's dtype (float32, or int64 for BatchNorm ``num_batches_tracked``).
torch's RNG is never used, so the weights do not depend on the torch version.

Names (manifest stems): ``merge_net``, ``midas_v2``, ``leres``, ``sgr``,
``depth_anything_v2_vits``, ``depth_anything_v2_vitb``.

Use::

    from synthetic_weights import write_checkpoint
    path = write_checkpoint("midas_v2", tmp_dir)        # tmp_dir / "midas_v2.pt"

or from a shell: ``python tests/synthetic_weights.py --out DIR [--seed 0] [NAME ...]``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

MANIFESTS = Path(__file__).resolve().parent / "data" / "manifests"

#: name -> (official file name, key the state_dict is wrapped under in the file, or None for a plain one)
FILES: dict[str, tuple[str, str | None]] = {
    "merge_net": ("merge_net.pth", None),  # latest_net_G.pth: plain state_dict
    "midas_v2": ("midas_v2.pt", None),  # midas/model.pt: plain state_dict
    "leres": ("leres.pth", "depth_model"),  # res101.pth: {'depth_model': state_dict}
    "sgr": ("sgr.pth.tar", "state_dict"),  # model.pth.tar: {'state_dict': 'module.'-prefixed keys}
    "depth_anything_v2_vits": ("depth_anything_v2_vits.pth", None),
    "depth_anything_v2_vitb": ("depth_anything_v2_vitb.pth", None),
}

_DTYPES = {"float32": np.float32, "int64": np.int64}


def names() -> list[str]:
    """The manifest stems this module can build, in a fixed order."""
    return list(FILES)


def manifest_path(name: str) -> Path:
    """Path of the manifest ``tests/data/manifests/<name>.json``; ValueError for an unknown name."""
    if name not in FILES:
        raise ValueError(f"unknown synthetic checkpoint {name!r}; known: {', '.join(FILES)}")
    return MANIFESTS / f"{name}.json"


def load_manifest(name: str) -> dict:
    """The parsed manifest: {'header': {...}, 'tensors': [[key, shape, dtype, rule], ...]}."""
    with open(manifest_path(name), encoding="utf-8") as f:
        return json.load(f)


def manifest_digest(name: str) -> str:
    """The sha256 the manifest header records for seed 0 (``sha256_seed0``)."""
    return load_manifest(name)["header"]["sha256_seed0"]


def make_array(key: str, shape: tuple[int, ...], dtype: str, rule: str, seed: int = 0) -> np.ndarray:
    """Values of one tensor: numpy array of ``shape`` and ``dtype``, deterministic in seed, key, rule."""
    np_dtype = _DTYPES[dtype]
    kind, _, arg = rule.partition(":")
    if kind == "zeros":
        return np.zeros(shape, np_dtype)
    if kind == "ones":
        return np.ones(shape, np_dtype)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    if kind == "normal":
        return rng.normal(0.0, float(arg), size=shape).astype(np_dtype)
    if kind == "uniform":
        lo, hi = map(float, arg.split(",")) if "," in arg else (-float(arg), float(arg))
        return rng.uniform(lo, hi, size=shape).astype(np_dtype)
    raise ValueError(f"unknown init rule {rule!r} for {key}")


def synthetic_state_dict(name: str, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """OrderedDict key -> CPU tensor, in manifest order (the official key order).

    For ``sgr`` the keys carry the ``module.`` prefix, exactly as in the official file.
    """
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape, dtype, rule in load_manifest(name)["tensors"]:
        sd[key] = torch.from_numpy(make_array(key, tuple(shape), dtype, rule, seed))
    return sd


def digest(sd) -> str:
    """sha256 over, for each key in order, the UTF-8 key then the tensor's raw bytes (little-endian)."""
    h = hashlib.sha256()
    for k, v in sd.items():
        h.update(k.encode("utf-8"))
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write_checkpoint(name: str, directory, seed: int = 0) -> Path:
    """Write the synthetic checkpoint ``name`` into ``directory`` with its official layout and file name.

    The file is written to a temporary name in ``directory`` first, then renamed into place.
    Returns the path, e.g. ``directory / "leres.pth"`` holding ``{'depth_model': state_dict}``.
    """
    return _write(name, synthetic_state_dict(name, seed), directory)


def _write(name: str, sd, directory) -> Path:
    manifest_path(name)  # ValueError for an unknown name
    file_name, wrapper = FILES[name]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / file_name
    fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({wrapper: sd} if wrapper else sd, f)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write deterministic synthetic checkpoints (official layouts).")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("names", nargs="*", default=names(), help=f"any of {', '.join(names())} (default: all)")
    a = ap.parse_args(argv)
    for name in a.names:
        sd = synthetic_state_dict(name, a.seed)
        path = _write(name, sd, a.out)
        print(f"{path}: {len(sd)} entries, sha256 of the state_dict {digest(sd)}")
        del sd


if __name__ == "__main__":
    main()
