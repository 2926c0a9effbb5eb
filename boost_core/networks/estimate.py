"""One base-network pass on an image, exactly as the reference's ``singleestimate`` (SPEC §2, §D.1).

``single_estimate(net, model, image, size)``:

1. ``size`` is clamped to ``net.max_size`` (1568);
2. ``prepare_input``: optional RGB -> BGR flip, resize of the float64 image to the network size
   (the rule of ``net.input.resize``), ImageNet normalisation, CHW float32 tensor (1, 3, h', w');
3. forward pass under ``torch.inference_mode``; the output is squeezed to (h', w') float32;
4. back to the image size by ``net.output.resize_back`` (``cv2.resize`` cubic; Depth Anything V2: torch
   bilinear, align_corners=True), with min-max normalisation to [0, 1] before or after it when
   ``net.output.normalize`` (a constant map gives zeros, where the reference crashes).

``single_pass(net, model, image)`` is the network's own single pass (``--mode single``): the same steps
at ``net.single_size`` with ``net.single_preparation``, without normalisation.

The dtypes follow the reference at every step, so that results match it to float32 rounding.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..normalise import min_max
from .registry import BaseNetwork, InputPreparation

_INTERPOLATION = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}


def check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"the image is empty (shape {image.shape})")
    return np.asarray(image, dtype=np.float64)


def _round_to_multiple(x: float, multiple: int, upper: int | None = None, lower: int = 0) -> int:
    """MiDaS's ``constrain_to_multiple_of``: round half to even; floor if above upper, ceil if below lower."""
    y = int(np.round(x / multiple) * multiple)
    if upper is not None and y > upper:
        y = int(np.floor(x / multiple) * multiple)
    if y < lower:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def input_size(net: BaseNetwork, image_hw: tuple[int, int], size: int,
               prep: InputPreparation | None = None) -> tuple[int, int]:
    """Network input (height, width) for an image of (height, width) ``image_hw`` at requested ``size``.

    prep: the input preparation to follow (default ``net.input``; ``net.single_preparation`` for the
    network's own single pass).

    ``size`` is clamped to ``net.max_size`` first. Examples (MiDaS, keep_aspect_upper_bound, multiple 32):
    (480, 640) at 960 -> (704, 960), since 720/32 = 22.5 rounds to 22. Square rules give (size, size).
    Raises ValueError for a size the network cannot take (not positive, or square and not a multiple).
    """
    size = min(int(size), net.max_size)
    prep = prep or net.input
    if size < prep.multiple_of:
        raise ValueError(f"{net.title}: size {size} is below the smallest input side {prep.multiple_of}")
    if prep.resize == "square":
        if size % prep.multiple_of:
            raise ValueError(f"{net.title} needs a size that is a multiple of {prep.multiple_of}, got {size}")
        return size, size
    h, w = image_hw
    if prep.resize == "keep_aspect_upper_bound":
        scale = min(size / h, size / w)
        new_h = _round_to_multiple(scale * h, prep.multiple_of, upper=size)
        new_w = _round_to_multiple(scale * w, prep.multiple_of, upper=size)
    elif prep.resize == "keep_aspect_lower_bound":
        scale = max(size / h, size / w)
        new_h = _round_to_multiple(scale * h, prep.multiple_of, lower=size)
        new_w = _round_to_multiple(scale * w, prep.multiple_of, lower=size)
    elif prep.resize == "keep_aspect_minimal":  # MiDaS 3.x: the scale that changes the image least
        scale_h, scale_w = size / h, size / w
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        new_h = _round_to_multiple(scale * h, prep.multiple_of)
        new_w = _round_to_multiple(scale * w, prep.multiple_of)
    else:
        raise ValueError(f"{net.title}: unknown resize rule {prep.resize!r}")
    # a very elongated image would give a side of 0, where the reference crashes: keep one multiple instead
    return max(new_h, prep.multiple_of), max(new_w, prep.multiple_of)


def prepare_input(net: BaseNetwork, image, size: int,
                  prep: InputPreparation | None = None) -> torch.Tensor:
    """The network input for ``image`` at requested ``size`` (clamped to ``net.max_size``).

    image: (H, W, 3) RGB in [0, 1] (float64; other dtypes are converted).
    Returns a (1, 3, h', w') float32 CPU tensor, (h', w') = ``input_size(net, (H, W), size)``.
    """
    image = check_image(image)
    prep = prep or net.input
    h, w = input_size(net, image.shape[:2], size, prep)
    if prep.channel_order == "BGR":
        image = image[:, :, ::-1]
    elif prep.channel_order != "RGB":
        raise ValueError(f"{net.title}: unknown channel order {prep.channel_order!r}")
    image = np.ascontiguousarray(image)
    resized = cv2.resize(image, (w, h), interpolation=_INTERPOLATION[prep.interpolation])  # cv2 takes (W, H)
    if prep.normalize_in == "float64":  # MiDaS transforms: normalise in float64, then cast
        normalized = (resized - np.asarray(prep.mean, np.float64)) / np.asarray(prep.std, np.float64)
        chw = np.ascontiguousarray(normalized.transpose(2, 0, 1)).astype(np.float32)
        return torch.from_numpy(chw).unsqueeze(0)
    # torchvision ToTensor + Normalize on a float32 image: cast, then normalise in float32
    chw = torch.from_numpy(np.ascontiguousarray(resized.astype(np.float32).transpose(2, 0, 1)))
    mean = torch.tensor(prep.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32).view(3, 1, 1)
    return chw.sub(mean).div(std).unsqueeze(0)


def single_estimate(net: BaseNetwork, model: torch.nn.Module, image, size: int, device="cpu") -> np.ndarray:
    """One pass of ``model`` (a loaded ``net``) on ``image`` at ``size``: the reference's singleestimate.

    image: (H, W, 3) RGB float64 in [0, 1]. size: requested network size in pixels, clamped to 1568.
    device: where the input goes (the model must already be there).
    Returns (H, W) float32: ``net.output_kind`` (inverse depth or depth), min-max normalised to [0, 1]
    when ``net.output.normalize`` (then a constant map gives zeros), raw network values otherwise.
    """
    image = check_image(image)
    x = prepare_input(net, image, size).to(device)
    with torch.inference_mode():
        y = model(x)
    return postprocess(net, y.reshape(y.shape[-2], y.shape[-1]).float().cpu().numpy(), image.shape[:2])


def postprocess(net: BaseNetwork, pred: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A network output (h', w') float32 -> the estimate at the image's (H, W), float32: resized back by
    ``net.output.resize_back``, min-max normalised before or after that when ``net.output.normalize``."""
    out = net.output
    if out.normalize and out.normalize_at == "before_resize":
        pred = min_max(pred)
    pred = resize_back(net, pred, image_hw)
    if out.normalize and out.normalize_at == "after_resize":
        pred = min_max(pred)
    return pred.astype(np.float32, copy=False)


def resize_back(net: BaseNetwork, pred: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """A network map (h', w') float32 brought to the image's (H, W) by ``net.output.resize_back``.

    "cv2_cubic": cv2.resize INTER_CUBIC; "torch_bilinear_align_corners": F.interpolate bilinear with
    align_corners=True, on CPU (as Depth Anything V2's infer_image); "torch_bicubic": F.interpolate bicubic,
    align_corners=False (as MiDaS 3.x run.py). Returns float32 (H, W).
    """
    height, width = image_hw
    method = net.output.resize_back
    if method == "cv2_cubic":
        return cv2.resize(pred, (width, height), interpolation=cv2.INTER_CUBIC)  # cv2 takes (W, H)
    if method in ("torch_bilinear_align_corners", "torch_bicubic"):
        grid = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
        bilinear = method == "torch_bilinear_align_corners"
        mode = "bilinear" if bilinear else "bicubic"
        with torch.inference_mode():
            out = torch.nn.functional.interpolate(grid, size=(height, width), mode=mode,
                                                  align_corners=bilinear)
        return out[0, 0].numpy()
    raise ValueError(f"{net.title}: unknown resize_back {method!r}")


def single_pass(net: BaseNetwork, model: torch.nn.Module, image, device="cpu") -> np.ndarray:
    """The network's own single pass, without boosting (``--mode single``).

    The image is prepared by ``net.single_preparation`` at ``net.single_size`` (Depth Anything V2: its
    official ``infer_image(raw, 518)``: shorter side 518, multiples of 14), run through ``model``, and
    resized back by ``net.output.resize_back``. Nothing is normalised.
    image: (H, W, 3) RGB float64 in [0, 1]; device: where the input goes (the model must be there).
    Returns (H, W) float32 raw network values (``net.output_kind``; relative inverse depth for Depth
    Anything V2 and MiDaS).
    """
    image = check_image(image)
    x = prepare_input(net, image, net.single_size, net.single_preparation).to(device)
    with torch.inference_mode():
        y = model(x)
    pred = y.reshape(y.shape[-2], y.shape[-1]).float().cpu().numpy()
    return resize_back(net, pred, image.shape[:2]).astype(np.float32, copy=False)
