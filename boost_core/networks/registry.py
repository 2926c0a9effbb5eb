"""The base depth networks, described as data, and loading them (and the merge net) from checkpoint files.

Each :class:`BaseNetwork` says everything the pipeline needs to know about a network without
branching on its name: its receptive field (the RF of the resolution search), how an image is
prepared for it, what its output means and how it is brought back to the image, and which
weight files (weights-registry names) fit it. The architecture lives in the family module named
by ``module`` (imported only when a network is loaded), which exposes ``build() -> nn.Module``.

Importing this module does not import torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: largest side ever fed to a base network (the reference's GPU_threshold 1600 - 32, SPEC §0)
MAX_SIZE = 1568


@dataclass(frozen=True)
class InputPreparation:
    """How an RGB float image in [0, 1] becomes the network input, for a requested size ``s``.

    resize:
      * "keep_aspect_upper_bound": scale = min(s/H, s/W); each side -> round-half-even to ``multiple_of``,
        or floor to it when rounding would exceed ``s`` (MiDaS);
      * "square": s x s, aspect ratio not kept (LeReS, SGR);
      * "keep_aspect_lower_bound": scale = max(s/H, s/W); round-half-even, ceil when below ``s`` (DPT-style);
      * "keep_aspect_minimal": of s/H and s/W the scale closer to 1 (ties: s/H); round-half-even, no bound
        (MiDaS 3.x "minimal").
    interpolation: OpenCV "cubic" or "linear", applied to the float64 image.
    channel_order: "BGR" flips the RGB image before anything else (LeReS, as the reference does).
    mean, std: per-channel normalisation (x - mean) / std, in the channel order fed to the network.
    normalize_in: "float64" normalises the float64 image then casts to float32 (MiDaS transforms);
      "float32" casts first and normalises in float32 (torchvision ToTensor + Normalize: LeReS, SGR).
    """

    resize: Literal["keep_aspect_upper_bound", "square", "keep_aspect_lower_bound", "keep_aspect_minimal"]
    multiple_of: int
    interpolation: Literal["cubic", "linear"]
    channel_order: Literal["RGB", "BGR"]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize_in: Literal["float64", "float32"] = "float64"


@dataclass(frozen=True)
class OutputHandling:
    """How the network output becomes a map at the image size.

    resize_back: "cv2_cubic" = cv2.resize(INTER_CUBIC) of the float32 map to the image (W, H);
      "torch_bilinear_align_corners" = F.interpolate(mode="bilinear", align_corners=True) (Depth Anything V2);
      "torch_bicubic" = F.interpolate(mode="bicubic", align_corners=False) (MiDaS 3.x run.py).
    normalize: min-max normalise to [0, 1] (a constant map becomes zeros).
    normalize_at: "after_resize" (MiDaS) or "before_resize" (SGR: the map is normalised at the network
      resolution, then resized, so cubic overshoot may leave [0, 1] slightly).
    """

    resize_back: Literal["cv2_cubic", "torch_bilinear_align_corners", "torch_bicubic"] = "cv2_cubic"
    normalize: bool = True
    normalize_at: Literal["after_resize", "before_resize"] = "after_resize"


@dataclass(frozen=True)
class BaseNetwork:
    """A base depth network.

    name: registry / CLI name. title: human name for messages. module: the family module in ``networks/models/``
    (with ``build()``). receptive_field: RF in pixels (resolution search base size, patch size RF*2).
    output_kind: "inverse_depth" (large = near) or "depth" (large = far). weights: weights-registry names
    of files that fit, the first being the default. max_size: largest side fed to the network.
    licence: licence of the official weights, in words.
    native_size: requested size of the network's own single pass (``--mode single``), when it differs from
      the RF (Depth Anything V2: its training size 518). single_input: the input preparation of that pass,
      when it differs from ``input`` (Depth Anything V2: the official shorter-side rule). variant: argument
      of the family module's ``build(variant)``, for families with several sizes (None: ``build()``).
    """

    name: str
    title: str
    module: str
    receptive_field: int
    output_kind: Literal["inverse_depth", "depth"]
    weights: tuple[str, ...]
    input: InputPreparation
    output: OutputHandling
    max_size: int = MAX_SIZE
    licence: str = ""
    native_size: int | None = None
    single_input: InputPreparation | None = None
    variant: str | None = None

    @property
    def single_size(self) -> int:
        """Requested size of the network's own single pass (``--mode single``): native_size or the RF."""
        return self.native_size or self.receptive_field

    @property
    def single_preparation(self) -> InputPreparation:
        """Input preparation of the network's own single pass: single_input, else ``input``."""
        return self.single_input or self.input


_NETWORKS: dict[str, BaseNetwork] = {
    n.name: n
    for n in (
        BaseNetwork(
            name="midas_v2",
            title="MiDaS v2 (ResNeXt-101)",
            module="midas_v2",
            receptive_field=384,
            output_kind="inverse_depth",
            weights=("midas_v2", "midas_v21"),
            input=InputPreparation(resize="keep_aspect_upper_bound", multiple_of=32, interpolation="cubic",
                                   channel_order="RGB", normalize_in="float64"),
            output=OutputHandling(resize_back="cv2_cubic", normalize=True, normalize_at="after_resize"),
            licence="MIT",
        ),
        BaseNetwork(
            name="leres",
            title="LeReS (ResNeXt-101)",
            module="leres",
            receptive_field=448,
            output_kind="depth",
            weights=("leres",),
            # the reference flips its RGB image to BGR before LeReS (SPEC §2b)
            input=InputPreparation(resize="square", multiple_of=32, interpolation="linear",
                                   channel_order="BGR", normalize_in="float32"),
            output=OutputHandling(resize_back="cv2_cubic", normalize=False),
            licence="LeReS licence (Adobe Research): non-commercial use only, no redistribution",
        ),
        BaseNetwork(
            name="sgr",
            title="SGR (ResNet-50)",
            module="sgr",
            receptive_field=448,
            output_kind="inverse_depth",
            weights=("sgr",),
            input=InputPreparation(resize="square", multiple_of=32, interpolation="cubic",
                                   channel_order="RGB", normalize_in="float32"),
            output=OutputHandling(resize_back="cv2_cubic", normalize=True, normalize_at="before_resize"),
            licence="Structure-Guided Ranking Loss: non-commercial, research use only",
        ),
        *(
            # Depth Anything V2 (DINOv2 ViT/14 + DPT head).
            # Own single pass = the official infer_image(raw, 518): shorter side -> 518, each side round-half-
            #   even to a multiple of 14 (ceil if below 518), cubic on float64 RGB, ImageNet mean/std; output
            #   bilinear align_corners=True back to the image, raw (not normalised).
            # Boosting: RF 448 = 32*14, the multiple of 14 nearest below the training size 518 that keeps the
            #   R search integral (int(RF/32) = 14, step int(RF/64) = 7): R in 448, 672, ..., 1568, all
            #   multiples of 14 and 32; patches at 2*RF = 896. Sizes bound the *longer* side (as for MiDaS in
            #   the reference), so the 1568 clamp bounds the token count. Output resized back the official
            #   way, then min-max normalised.
            BaseNetwork(
                name=f"depth_anything_v2_{variant}",
                title=f"Depth Anything V2 {variant.capitalize()} ({encoder})",
                module="depth_anything_v2",
                receptive_field=448,
                output_kind="inverse_depth",
                weights=(f"depth_anything_v2_{variant}",),
                input=InputPreparation(resize="keep_aspect_upper_bound", multiple_of=14,
                                       interpolation="cubic", channel_order="RGB", normalize_in="float64"),
                output=OutputHandling(resize_back="torch_bilinear_align_corners", normalize=True,
                                      normalize_at="after_resize"),
                licence=licence,
                native_size=518,
                single_input=InputPreparation(resize="keep_aspect_lower_bound", multiple_of=14,
                                              interpolation="cubic", channel_order="RGB",
                                              normalize_in="float64"),
                variant=variant,
            )
            for variant, encoder, licence in (
                ("small", "ViT-S/14", "Apache-2.0"),
                ("base", "ViT-B/14", "CC-BY-NC-4.0 (non-commercial use only)"),
                ("large", "ViT-L/14", "CC-BY-NC-4.0 (non-commercial use only)"),
            )
        ),
        *(
            # MiDaS 3.0 / 3.1 DPT models. Own single pass = MiDaS run.py: "minimal" keep-aspect resize to the
            #   training size (for photos larger than it: the shorter side), multiples of 32, cubic on float64
            #   RGB, mean/std 0.5; output bicubic (torch, align_corners=False) back to the image, raw.
            # Boosting: RF = the training size (384, or 512 for BEiT-L: R in 512, 768, ..., 1536), sizes bound
            #   the longer side with multiples of 32 exactly as MiDaS v2 in the reference; output resized back
            #   the official way, then min-max normalised.
            BaseNetwork(
                name=name,
                title=title,
                module="midas_dpt",
                receptive_field=size,
                output_kind="inverse_depth",
                weights=(name,),
                input=InputPreparation(resize="keep_aspect_upper_bound", multiple_of=32,
                                       interpolation="cubic", channel_order="RGB", mean=(0.5, 0.5, 0.5),
                                       std=(0.5, 0.5, 0.5), normalize_in="float64"),
                output=OutputHandling(resize_back="torch_bicubic", normalize=True,
                                      normalize_at="after_resize"),
                licence="MIT",
                native_size=size,
                single_input=InputPreparation(resize="keep_aspect_minimal", multiple_of=32,
                                              interpolation="cubic", channel_order="RGB",
                                              mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                              normalize_in="float64"),
                variant=name,
            )
            for name, title, size in (
                ("dpt_beit_large_512", "MiDaS 3.1 DPT BEiT-L 512", 512),
                ("dpt_large_384", "MiDaS 3.0 DPT-Large (ViT-L/16)", 384),
                ("dpt_hybrid_384", "MiDaS 3.0 DPT-Hybrid (R50 + ViT-B/16)", 384),
            )
        ),
    )
}

MERGE_NET_TITLE = "the merge network (pix2pix U-Net 1024)"
MERGE_NET_MODULE = "merge_net"
MERGE_NET_WEIGHTS = "merge_net"


def names() -> list[str]:
    """Names of the registered base networks, in registry order."""
    return list(_NETWORKS)


def get(name: str) -> BaseNetwork:
    """The BaseNetwork called ``name``; ValueError listing the known names otherwise."""
    try:
        return _NETWORKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(_NETWORKS)}") from None


def all_networks() -> tuple[BaseNetwork, ...]:
    """Every registered BaseNetwork, in registry order."""
    return tuple(_NETWORKS.values())


def load_base(net: BaseNetwork, path, device="cpu"):
    """Build ``net``'s architecture and load the checkpoint at ``path`` strictly; eval mode, on ``device``.

    The file may be in any of the official layouts (see ``checkpoint``). Raises CheckpointError (a
    ValueError) naming the file and the problem for a missing, corrupt or foreign file.
    """
    return _load(
        net.module, path, device, net.title, net.weights[0], variant=net.variant,
        hint=f"Is this the right file for --net {net.name}? It expects "
             f"{' or '.join(net.weights)} weights.",
    )


def load_merge_net(path, device="cpu"):
    """The merge network with the checkpoint at ``path`` loaded strictly, in eval mode on device."""
    return _load(MERGE_NET_MODULE, path, device, MERGE_NET_TITLE, MERGE_NET_WEIGHTS,
                 hint=f"Is this the right file for --merge-weights? It expects {MERGE_NET_WEIGHTS} "
                      f"(latest_net_G.pth).")


def family(module_name: str):
    """The family module ``networks/models/<module_name>.py`` (has ``build()``); imports torch."""
    return importlib.import_module(f"{__package__}.models.{module_name}")


def _load(module_name: str, path, device, title: str, weights_name: str, hint: str,
          variant: str | None = None):
    import torch

    from .checkpoint import load_strict, read_state_dict

    state_dict = read_state_dict(path, network_title=title, weights_name=weights_name)
    models = family(module_name)
    with torch.device("meta"):  # no memory or time spent on a random init: the file replaces every tensor
        model = models.build() if variant is None else models.build(variant)
    load_strict(model, state_dict, path, title, hint=hint, assign=True)
    leftover = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if leftover:  # cannot happen for a strict load; a guard against a family module with extra buffers
        raise RuntimeError(f"{title}: tensors not set by {path}: {', '.join(leftover[:3])}")
    model = model.to(device=device, dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model
