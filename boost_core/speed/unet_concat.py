"""The merge net's skip concatenations built in place: each U-Net level writes both halves into one map.

Every inner level of the pix2pix U-Net (``networks.models.merge_net``) returns ``cat([h, up(inner)])`` with
``h = leaky_relu(x)``, and its parent at once rectifies the whole concatenation before its up-convolution. As
written, each level therefore copies both halves into a new map (the concatenation) and passes over it again (the
parent's ReLU): at 1024² those passes were ~13 % of a merge-net forward (concatenations 11 %).

Here the parent's ReLU is done while the halves are written, into a map allocated once per level
(channels-last, ``h``'s channels then the up-convolution's):

    first half   relu(h)            one pass from h (relu(leaky_relu(x)) = relu(x): the same values as before)
    second half  relu(up(inner))    the up-convolution's output transform writes straight into the channel slice
                                    (``WinogradStride2ConvTranspose2d.forward_into``; a copy where the layer runs
                                    directly), then one in-place ReLU over that half

The numbers are identical to the layer-by-layer forward (the same operations on the same values, only where the
results are stored differs): ``tests/test_unet_concat.py`` compares them bit for bit. Inference only; float32
channels-last maps on the CPU, anything else runs the network as written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layer_swap import swap_layers


def _up_channels(up: nn.Module) -> int:
    layer = getattr(up, "layer", up)  # a Winograd / GEMM form keeps the original as .layer
    return layer.out_channels


def _write_up(up: nn.Module, inner: torch.Tensor, target: torch.Tensor) -> None:
    """target[...] = up(inner); target: (N, k, 2H, 2W), unit channel stride."""
    forward_into = getattr(up, "forward_into", None)
    if forward_into is not None:
        forward_into(inner, target)
    else:
        target.copy_(up(inner))


def rectified_level(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``relu(block(x))`` for a non-outermost ``UnetBlock``: (N, C, H, W) -> (N, C + k, H, W), channels-last.

    x (the parent's down-convolution output) is overwritten with ``leaky_relu(x, 0.2)``, as the block itself does.
    """
    m = block.model
    h = F.leaky_relu_(x, 0.2)
    if block.innermost:
        inner, up = F.relu_(m[1](h)), m[3]
    else:
        inner, up = rectified_level(m[3], m[1](h)), m[5]
    n, c, height, width = h.shape
    k = _up_channels(up)
    out = h.new_empty((n, height, width, c + k)).permute(0, 3, 1, 2)  # NCHW view of an NHWC map
    torch.clamp_min(h, 0, out=out[:, :c])
    upper = out[:, c:]
    _write_up(up, inner, upper)
    F.relu_(upper)
    return out


def _fits(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last) and not torch.is_autocast_enabled("cpu"))


class ConcatFreeUnet(nn.Module):
    """Drop-in for the merge net's ``UnetGenerator`` (inference only): (N, 2, H, W) -> (N, 1, H, W) in [-1, 1],
    the same numbers; channels-last float32 CPU input takes the in-place concatenations, anything else the
    generator's own forward."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        if not qualifies(generator):
            raise ValueError(f"not the merge net's UnetGenerator: {type(generator).__name__}")
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fits(x):
            return self.generator(x)
        m = self.generator.model.model  # outermost: [down, sub, ReLU, up, Tanh]
        return torch.tanh_(m[3](rectified_level(m[1], m[0](x))))


def qualifies(module: nn.Module) -> bool:
    """The merge net's ``UnetGenerator`` (an outermost block over inner blocks)."""
    from ..networks.models import merge_net

    return isinstance(module, merge_net.UnetGenerator) and module.model.outermost


def replace_generators(model: nn.Module) -> int:
    """Wrap ``model`` itself or its ``UnetGenerator`` submodules in :class:`ConcatFreeUnet`; the count. A model
    that is itself a generator cannot be replaced in place: use :func:`concat_free`."""
    return swap_layers(model, qualifies, ConcatFreeUnet)


def concat_free(model: nn.Module) -> nn.Module:
    """``model`` with its generator(s) computing the concatenations in place (a wrapper when model is one)."""
    if qualifies(model):
        return ConcatFreeUnet(model)
    replace_generators(model)
    return model


__all__ = ["ConcatFreeUnet", "concat_free", "qualifies", "rectified_level", "replace_generators"]
