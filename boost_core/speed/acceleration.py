"""Faster inference for loaded networks: BatchNorm folding, memory format, threads, precision.

    from boost_core.speed import acceleration
    options = acceleration.Acceleration()            # the parity-safe defaults
    acceleration.accelerate_networks(networks, options)   # a DepthNetworks, changed in place

Every optimisation is a switch of :class:`Acceleration`. The defaults are what ``pipeline.load_networks`` and
``python -m boost_core`` use; they keep the output at parity with the reference (float32 rounding only, checked
by the parity goldens in ``tests/``):

* ``fold_batchnorm`` (on): an eval-mode BatchNorm2d directly after a Conv2d is folded into the conv's weight
  and bias (computed in float64, stored in float32). Saves one full pass over every activation map.
* ``channels_last``: "auto" (default) uses NHWC for the convolutional networks, where oneDNN measured faster
  on CPU (merge net at 1024²: -26% CPU time; MiDaS v2 with folded BatchNorm: -6% at 384², -11% at 768²), and
  keeps NCHW for the transformer networks (not measured). True / False force it for every network.
* ``winograd``: "auto" (default) computes the dense 3x3 convolutions with >= 128 in and out channels (in x out
  >= 128 x 256) of the channels-last networks on CPU by Winograd F(4x4, 3x3) wherever the map is large enough to gain
  (``boost_core.speed.winograd``: 4x fewer multiplies; whole MiDaS v2 forwards -12% at 384², -16% at 768²; LeReS and SGR
  similar or better; output within ~4e-6 of the direct convolutions), and the merge net's wide 4x4 stride-2
  (up-)convolutions by F(4x4, 2x2) (``boost_core.speed.winograd_stride2``: 2.56x fewer multiplies; merge net -19% at
  1024²); True forces both for every network, False keeps every convolution direct.
* ``native_kernels``: "auto" (default) computes the Winograd layers' input and output transforms with a small C
  library built once with the system C compiler (``boost_core.speed.kernels.compiled``: one pass each instead of a padded
  copy, a gather, a GEMM with K = 36 and a strided copy: the Winograd layers of MiDaS v2 at 768² 1.88 -> 1.47 s),
  and with them lower floors for Winograd (128 -> 128 channels, maps from 32 tiles, the merge net's 128 -> 256 and
  256 -> 64 layers, MiDaS v2's head phases: MiDaS v2 a further -7% at 384², -4% at 768², LeReS -9%, SGR -16%),
  and F(6x6, 3x3) on large maps (MiDaS v2 another -3% at 384², -6% at 768², LeReS -6..11%, SGR -12%), and with
  them the a*a products of each layer as one grouped 1x1 convolution of oneDNN instead of torch's batched GEMM
  (MKL ran it on AVX2 code paths on the AMD CPU: MiDaS v2 at 768² on one thread 2.86 -> 2.34 s);
  without a C compiler it keeps the torch form and its floors; True requires it (an error names what is missing),
  False keeps the torch form.
* ``layer_rewrites``: "auto" (default) computes these layer patterns of the channels-last networks on CPU in an
  equivalent, faster form (same multiplies, float32 rounding only): 4x4 stride-2 up-convolutions with <= 4 output
  channels as one GEMM and an overlap-add (``boost_core.speed.upconv_gemm``: the merge net's last layer, 128 -> 1 at 512²,
  82 -> 26 ms), and a bilinear x2 upsampling followed by a 3x3 convolution as one four-phase 3x3 convolution at the
  input's size (``boost_core.speed.upsample_conv``: MiDaS v2's head); on channels-last networks also the ResNet
  bottlenecks' ReLUs and residual sums as oneDNN post-ops of their convolutions (``boost_core.speed.fused_activations``:
  MiDaS v2 at 768² about -3%) and the merge net's skip concatenations written in place, the parent's ReLU with them
  (``boost_core.speed.unet_concat``: merge net -5% at 1024², bit for bit). True forces them, False keeps the original
  layers.
* ``threads``: torch intra-op threads (None: leave torch's setting alone).
* ``lanes``: "auto" (default) runs the independent forwards of Final's patch pairs side by side, two lanes of half the
  threads each, on a CPU with >= 2 threads where the heap settings below apply (``boost_core.speed.lanes``: MiDaS v2
  at 768² and the merge net -11 % a forward); a number forces that many lanes on CPU, 1 none.
* ``reuse_freed_memory`` (on): glibc keeps freed activation memory for the next layer instead of unmapping it
  (``boost_core.speed.allocator``; process-wide; merge net -25..35%, MiDaS 768² -20..25% on this project's CPU).
* ``precision``: "fp32" (default). "bf16" (CPU/CUDA autocast) and "fp16" (CUDA/MPS autocast) are faster
  on hardware with native support but **break parity** with the reference (errors around 1e-2 of the
  depth range): off by default, for users who prefer speed.

Inference mode itself is applied at every forward (``torch.inference_mode``) by ``networks.estimate`` and
``double_estimation``; :func:`autocast` is the context the forwards run under for a reduced precision.

Importing this module imports torch (``boost_core`` itself does not).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Acceleration:
    """Switches of :func:`accelerate`; the defaults are the parity-safe set measured fastest on CPU."""

    fold_batchnorm: bool = True
    channels_last: bool | Literal["auto"] = "auto"
    winograd: bool | Literal["auto"] = "auto"
    layer_rewrites: bool | Literal["auto"] = "auto"
    native_kernels: bool | Literal["auto"] = "auto"
    threads: int | None = None
    lanes: int | Literal["auto"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    reuse_freed_memory: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        for name in ("channels_last", "winograd", "layer_rewrites", "native_kernels"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {getattr(self, name)!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be a positive count, got {self.threads}")
        if self.lanes != "auto" and (isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or self.lanes < 1):
            raise ValueError(f"lanes must be a positive count or 'auto', got {self.lanes!r}")

    @property
    def parity_safe(self) -> bool:
        """True when the output stays at float32 parity with the reference (precision fp32)."""
        return self.precision == "fp32"


#: no optimisation at all (the reference's way of running the networks): the benchmarks' baseline
PLAIN = Acceleration(fold_batchnorm=False, channels_last=False, winograd=False, layer_rewrites=False,
                     native_kernels=False, reuse_freed_memory=False, lanes=1)


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d computing bn(conv(x)) (eval-mode statistics), weights folded in float64, same dtype/device.

    Built on the meta device and given the folded tensors (a real Conv2d would first fill its weights with random
    numbers: ~1 s for MiDaS v2's 105 M parameters).
    """
    if bn.training or bn.running_mean is None:
        raise ValueError("only an eval-mode BatchNorm with running statistics can be folded")
    dtype = conv.weight.dtype
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                               device=w.device)
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device="meta", dtype=dtype)
    fused.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    fused.bias = nn.Parameter(((b - mean) * scale + beta).to(dtype), requires_grad=False)
    return fused


def _attribute_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) attribute names whose forward is known to apply bn right after conv (ResNet family)."""
    from ..networks.layers import resnext

    if isinstance(module, resnext.Bottleneck):
        return [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
    if isinstance(module, resnext.ResNet):
        return [("conv1", "bn1")]
    return []


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, in place; returns the count.

    Folded where the order is certain: adjacent (Conv2d, BatchNorm2d) slots of an ``nn.Sequential``, and the
    convN/bnN pairs of the ResNet/ResNeXt modules of ``networks.resnext``. The BatchNorm becomes an
    ``nn.Identity`` (its parameters disappear from the state_dict: fold after loading, never before).
    A model in training mode is refused (its BatchNorm uses batch statistics).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval() first)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (name_a, a), (name_b, b) in zip(children, children[1:]):
                if type(a) is nn.Conv2d and type(b) is nn.BatchNorm2d:
                    module._modules[name_a] = _fold_pair(a, b)
                    module._modules[name_b] = nn.Identity()
                    folded += 1
        for conv_name, bn_name in _attribute_pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
                setattr(module, conv_name, _fold_pair(conv, bn))
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def wants_channels_last(model: nn.Module, options: Acceleration, device: str = "cpu") -> bool:
    """Whether ``model`` runs in NHWC: forced by ``options.channels_last``, else "auto" (see module doc).

    "auto" = the convolutional networks measured faster in NHWC (oneDNN, this project's CPU): those built on
    ``networks.resnext`` (MiDaS v2, LeReS, SGR) and the merge net. Transformer networks keep NCHW.
    """
    if options.channels_last != "auto":
        return bool(options.channels_last)
    from ..networks.models import merge_net
    from ..networks.layers import resnext

    # Bottleneck, not ResNet: MiDaS v2 keeps the encoder's blocks but not the ResNet module itself
    return any(isinstance(m, (resnext.Bottleneck, merge_net.UnetGenerator)) for m in model.modules())


class ChannelsLast(nn.Module):
    """Runs ``model`` on NHWC tensors: the input is converted, the output (any layout) made contiguous NCHW."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).contiguous()


def winograd_kernels(options: Acceleration, device: str = "cpu"):
    """The compiled Winograd transforms ``options.native_kernels`` asks for on ``device``, or None (torch form).

    Raises RuntimeError when they are required (True) but cannot be built or loaded, naming the reason.
    """
    if options.native_kernels is False or torch.device(device).type != "cpu":
        return None
    from .kernels import compiled as native_kernels

    kernels = native_kernels.winograd_kernels()
    if kernels is None and options.native_kernels is True:
        raise RuntimeError(f"compiled Winograd transforms unavailable: {native_kernels.unavailable_reason()}; "
                           "install a C compiler or use native_kernels='auto' (or False)")
    return kernels


def accelerate(model: nn.Module, options: Acceleration = Acceleration(), device: str = "cpu") -> nn.Module:
    """``model`` (loaded, eval mode, on ``device``) with the optimisations of ``options``; may return a wrapper.

    BatchNorm folding changes the module in place. Threads and the heap settings are process-wide.
    """
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    if options.reuse_freed_memory:
        from .allocator import reuse_freed_memory

        reuse_freed_memory()
    if options.fold_batchnorm:
        fold_batchnorm(model)
    channels_last = wants_channels_last(model, options, device)
    on_cpu = torch.device(device).type == "cpu"  # cuDNN picks its own Winograd kernels on GPUs
    kernels = None  # compiled Winograd transforms, where Winograd is on
    if options.winograd is True or (options.winograd == "auto" and channels_last and on_cpu):
        from . import winograd, winograd_stride2

        kernels = winograd_kernels(options, device)
        winograd.replace_convolutions(model, kernels)  # wide 3x3 convolutions: F(4x4, 3x3)
        winograd_stride2.replace_layers(model, kernels)  # wide 4x4 stride-2 (up-)convolutions: F(4x4, 2x2)
    if options.layer_rewrites is True or (options.layer_rewrites == "auto" and channels_last and on_cpu):
        from . import upconv_gemm, upsample_conv

        upconv_gemm.replace_layers(model)  # narrow 4x4 stride-2 up-convolutions: GEMM + overlap-add
        upsample_conv.replace_pairs(model, kernels)  # bilinear x2 + 3x3 convolution: four phases at the input's size
        if channels_last:
            from . import fused_activations

            fused_activations.replace_blocks(model)  # bottlenecks: ReLUs and the residual sum as oneDNN post-ops
            from . import unet_concat

            model = unet_concat.concat_free(model)  # merge net: skip concatenations written in place
    if channels_last:
        model = ChannelsLast(model)
    model.eval()
    return model


def forward_lanes(options: Acceleration, device: str = "cpu"):
    """The ``speed.lanes.ForwardLanes`` that ``options.lanes`` asks for on ``device``, or None (forwards in turn).

    "auto": two lanes on a CPU with >= 2 intra-op threads, where the one-heap setting of
    ``allocator.reuse_freed_memory`` applies (without it the lanes were measured slower); a number: that many lanes
    on CPU, threads shared between them (at least one each). Never on accelerators (one device, one queue).
    """
    if torch.device(device).type != "cpu":
        return None
    from . import lanes

    threads = torch.get_num_threads()
    if options.lanes == "auto":
        from .allocator import reuse_freed_memory

        count = lanes.lane_count(threads) if options.reuse_freed_memory and reuse_freed_memory() else 1
    else:
        count = int(options.lanes)
    return lanes.ForwardLanes(count, max(1, threads // count)) if count > 1 else None


def accelerate_networks(networks, options: Acceleration = Acceleration()):
    """Apply :func:`accelerate` to both models of a ``DepthNetworks`` (in place) and give it the lanes of
    :func:`forward_lanes`; returns it."""
    networks.base_model = accelerate(networks.base_model, options, networks.device)
    if networks.merge_model is not None:
        networks.merge_model = accelerate(networks.merge_model, options, networks.device)
    networks.acceleration = options
    networks.lanes = forward_lanes(options, networks.device)
    if networks.lanes is not None:
        for model in (networks.base_model, networks.merge_model):
            if model is not None:
                networks.lanes.watch(model)  # a cancel stops the lanes between two layers
    return networks


def autocast(options: Acceleration, device: str = "cpu"):
    """The context the forwards run under: autocast for bf16/fp16, a no-op for fp32."""
    if options.precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    dtype = torch.bfloat16 if options.precision == "bf16" else torch.float16
    if options.precision == "fp16" and device_type not in ("cuda", "mps"):
        raise ValueError(f"precision fp16 needs a CUDA or MPS device, not {device!r}; use bf16 on CPU")
    return torch.autocast(device_type=device_type, dtype=dtype)
