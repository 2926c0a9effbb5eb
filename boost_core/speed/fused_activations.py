"""ReLU and the residual sum done by the convolution that precedes them (oneDNN post-ops), in ResNet bottlenecks.

With BatchNorm folded, a bottleneck of ``networks.layers.resnext`` (the encoders of MiDaS v2, LeReS and SGR) is

    out = relu(conv1(x));  out = relu(conv2(out));  out = relu(conv3(out) + identity)

and torch runs each ReLU and the sum as a pass of its own over a map as large as the convolution's output: on
MiDaS v2 at 768² those passes were ~10 % of the forward (ReLU 7.5 %, sum 2.4 %, mostly ResNeXt's stage 3). oneDNN
applies them to each block of the convolution's output while it is still in cache ("post-ops"), reached through
the operators torch's own compiler emits for CPU (``torch.ops.mkldnn._convolution_pointwise``; its in-place
``.binary`` form adds ``conv3``'s output into ``identity`` and rectifies the sum there).

The numbers are the same: ``max(0, y)`` of the same ``y``, and the sum post-op adds the same two float32 values
(``tests/test_fused_activations.py`` allows float32 rounding, 1e-6; MiDaS v2 forwards at 384² and 768² came out
identical). Inference only. The identity map is overwritten
with the block's output: in these encoders it is the block's own input (blocks without ``downsample``), which
every caller hands on and never reads again (a stage's input always enters its first block, which has a
``downsample``), or the ``downsample``'s fresh output.

Used where the operators exist (oneDNN builds of torch, CPU, float32, no autocast) on channels-last maps; anywhere
else the block runs as written. A 3x3 convolution already replaced by a Winograd layer keeps it and a separate ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layer_swap import swap_layers
from .onednn import has_pointwise_convolution


def available() -> bool:
    """Whether this torch has oneDNN and the fused convolution operators (torch's CPU builds do)."""
    return has_pointwise_convolution(in_place=True)


def _fusable(conv: nn.Module) -> bool:
    """A plain Conv2d with a bias (BatchNorm folded), zero padding, float32 weights on the CPU."""
    return (type(conv) is nn.Conv2d and conv.bias is not None and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.weight.dtype == torch.float32
            and conv.weight.device.type == "cpu")


def qualifies(block: nn.Module) -> bool:
    """A ``resnext.Bottleneck`` whose BatchNorms are folded and whose 1x1 convolutions can carry the post-ops."""
    from ..networks.layers import resnext

    return (isinstance(block, resnext.Bottleneck)
            and all(type(getattr(block, name)) is nn.Identity for name in ("bn1", "bn2", "bn3"))
            and _fusable(block.conv1) and _fusable(block.conv3))


def _geometry(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x))`` in one oneDNN call. x: (N, C, H, W) float32, channels-last; output channels-last."""
    padding, stride, dilation, groups = _geometry(conv)
    return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, padding, stride, dilation, groups,
                                                   "relu", [], "")


def conv_add_relu_(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other = relu(conv(x) + other)`` in place in one oneDNN call; returns ``other``.

    other: conv(x)'s shape, float32, channels-last contiguous (it receives the result).
    """
    padding, stride, dilation, groups = _geometry(conv)
    return torch.ops.mkldnn._convolution_pointwise_(other, x, conv.weight, conv.bias, padding, stride, dilation,
                                                    groups, "add", 1.0, "relu", [], "")


def _can_fuse(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last) and not torch.is_autocast_enabled("cpu"))


class FusedBottleneck(nn.Module):
    """Drop-in for a qualifying (folded) Bottleneck, inference only; same parameters, same numbers.

    x: (N, C_in, H, W) float32 -> (N, 4 * planes, H / stride, W / stride). On channels-last CPU maps the ReLUs and
    the residual sum run as post-ops of the convolutions (the identity map is overwritten, see the module doc);
    otherwise, or under autocast, exactly the original block's forward.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        if not qualifies(block):
            raise ValueError(f"not a Bottleneck with folded BatchNorms and plain 1x1 convolutions: {block}")
        self.block = block
        self.fuse_conv2 = _fusable(block.conv2) and block.conv2.groups == 1  # grouped: measured no faster

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = self.block
        if not _can_fuse(x):
            return block(x)
        identity = x if block.downsample is None else block.downsample(x)
        if not _can_fuse(identity):
            return block(x)
        out = conv_relu(block.conv1, x)
        out = conv_relu(block.conv2, out) if self.fuse_conv2 else F.relu_(block.conv2(out))
        return conv_add_relu_(block.conv3, out, identity)


def replace_blocks(model: nn.Module) -> int:
    """Swap every qualifying Bottleneck of ``model`` for a :class:`FusedBottleneck` (none where the operators are
    missing), in place; returns the count. Call after BatchNorm folding (and after the Winograd swaps)."""
    if not available():
        return 0
    return swap_layers(model, qualifies, FusedBottleneck)


__all__ = ["FusedBottleneck", "available", "conv_add_relu_", "conv_relu", "qualifies", "replace_blocks"]
