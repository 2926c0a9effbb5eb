"""The reference goldens (tests/data/golden; provenance in its README.md) and the comparison rule."""

import json
from functools import lru_cache

import numpy as np
import skimage.data

from paths import DATA

GOLDEN = DATA / "golden"
NETS = {"MiDaS v2 (depthNet 0)": "midas_v2"}  # other nets are recognised by their receptive field below


def case(name: str) -> dict:
    """Trace of one golden case, with normalised fields: net, mode, max_res, image array, final map."""
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    net = meta.get("net", "")
    meta["net_name"] = "leres" if "LeReS" in net else "sgr" if "SGR" in net else "midas_v2"
    meta["mode_name"] = meta.get("mode", "").lower()
    meta["max_res_value"] = meta["max_res"] if isinstance(meta.get("max_res"), (int, float)) else None
    return meta


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """skimage sample image as the pipeline input: float64 RGB (H, W, 3) in [0, 1]."""
    return getattr(skimage.data, name)().astype(np.float64) / 255


def final(name: str) -> np.ndarray:
    return np.load(GOLDEN / f"{name}.npz")["final"]


def compare(ours: np.ndarray, reference: np.ndarray) -> dict:
    """The golden README's rule, after min-max normalising both in float64."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    assert np.isfinite(ours).all()
    a, b = (np.asarray(x, np.float64) for x in (ours, reference))
    a, b = ((x - x.min()) / (x.max() - x.min()) for x in (a, b))
    d = np.abs(a - b)
    return {"max": float(d.max()), "mean": float(d.mean()), "pearson": float(np.corrcoef(a.ravel(), b.ravel())[0, 1])}


def assert_matches(ours: np.ndarray, reference: np.ndarray) -> dict:
    stats = compare(ours, reference)
    assert stats["max"] <= 1e-4 and stats["mean"] <= 1e-5 and stats["pearson"] >= 0.99999, stats
    return stats
