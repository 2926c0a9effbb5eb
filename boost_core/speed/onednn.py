"""Whether this torch build has oneDNN's fused convolution operators (torch's x86 CPU builds do).

``torch.ops.mkldnn._convolution_pointwise`` (a convolution with an optional unary post-op, e.g. ReLU) is what
``kernels.compiled.WinogradKernels.multiply`` runs the Winograd products as (a grouped 1x1 convolution);
``fused_activations`` also needs its in-place binary form ``_convolution_pointwise_`` (sum, then ReLU). Both are
private torch operators, looked up by name, so every caller asks here first and keeps a plain path otherwise.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=2)
def has_pointwise_convolution(in_place: bool = False) -> bool:
    """Whether oneDNN is usable and ``torch.ops.mkldnn._convolution_pointwise`` exists (and, with ``in_place``,
    its binary in-place form ``_convolution_pointwise_``)."""
    names = ("_convolution_pointwise", "_convolution_pointwise_") if in_place else ("_convolution_pointwise",)
    try:
        return torch.backends.mkldnn.is_available() and all(hasattr(torch.ops.mkldnn, name) for name in names)
    except (AttributeError, RuntimeError):
        return False


__all__ = ["has_pointwise_convolution"]
