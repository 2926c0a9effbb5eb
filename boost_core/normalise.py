"""Min-max normalisation, the one used everywhere (network outputs, double estimates, merge-net inputs, training).

    min_max(x)   # (x - min) / (max - min), same type, dtype and shape as x; numpy arrays or torch tensors

A span at or below float64's machine epsilon (2.2e-16, the reference's guard in its single estimate) counts as a
constant map: the result is zeros instead of the NaN / noise the division would give. Maps with NaN give zeros too.
"""

from __future__ import annotations

import numpy as np

#: spans up to this are a constant map (np.finfo(float).eps, as the reference's ``singleestimate``)
EPS = float(np.finfo(float).eps)


def min_max(x):
    """(x - min) / (max - min) in x's dtype -> values in [0, 1]; zeros for a constant map.

    x: numpy array or torch tensor of any shape (the min and max are over all elements).
    """
    lo, hi = x.min(), x.max()
    span = hi - lo
    if not float(span) > EPS:
        return np.zeros_like(x) if isinstance(x, np.ndarray) else x.new_zeros(x.shape)
    return (x - lo) / span
