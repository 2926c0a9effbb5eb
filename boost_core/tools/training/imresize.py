"""MATLAB ``imresize(A, [h w])`` with its default bicubic kernel, as the reference's crop script uses it (SPEC §A.3).

MATLAB's bicubic is Keys' cubic with a = -0.5 (OpenCV's ``INTER_CUBIC`` uses a = -0.75) and, when shrinking,
antialiasing: the kernel is widened by 1/scale (OpenCV has none). Output pixel x (1-based) samples the input at
``u = x/scale + (1 - 1/scale)/2``; indices outside the image are mirrored (symmetric padding). The two axes are
resized one after the other, rows first when both scales are equal (the smaller scale first otherwise); an
integer input is rounded (half away from zero) and saturated back to its type after each axis.
The per-axis rounding of integer data follows MATLAB's documented behaviour of ``imresize`` keeping the class
of its input (unverified against MATLAB itself); the weights equal Pillow's bicubic resampling away from the
borders.
"""

from __future__ import annotations

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_weights(in_length: int, out_length: int, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, the 0-based input indices and their weights: two (out_length, taps) arrays.

    ``out[o] = sum_t weights[o, t] * in[indices[o, t]]``; each row of weights sums to 1.
    """
    scale = out_length / in_length
    if scale < 1 and antialias:
        def kernel(x):
            return scale * cubic(scale * x)
        width = 4.0 / scale
    else:
        kernel = cubic
        width = 4.0
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(np.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside [1, in_length]
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])
    indices = mirror[np.mod(indices - 1, mirror.size).astype(np.int64)] - 1
    return indices, weights


def resize_matrix(in_length: int, out_length: int, antialias: bool = True) -> np.ndarray:
    """(out_length, in_length) float64 matrix W such that ``W @ column`` is MATLAB's bicubic resize of a column."""
    indices, weights = resize_weights(in_length, out_length, antialias)
    matrix = np.zeros((out_length, in_length), np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_length), indices.shape[1]), indices.ravel()), weights.ravel())
    return matrix


def _resize_axis(data: np.ndarray, size: int, axis: int, antialias: bool) -> np.ndarray:
    indices, weights = resize_weights(data.shape[axis], size, antialias)
    moved = np.moveaxis(data, axis, 0)  # (in, ...)
    out = np.zeros((size, *moved.shape[1:]), np.float64)
    extra = (slice(None),) + (None,) * (moved.ndim - 1)
    for t in range(indices.shape[1]):
        out += weights[:, t][extra] * moved[indices[:, t]]
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, shape: tuple[int, int], antialias: bool = True) -> np.ndarray:
    """Bicubic resize of an (H, W) or (H, W, C) array to ``shape`` = (h, w), MATLAB style; same dtype.

    Float inputs are resized in float64 and returned in their dtype; integer inputs are rounded half away from
    zero and clipped to their type's range after each axis.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    out_h, out_w = shape
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {shape}")
    integer = np.issubdtype(image.dtype, np.integer)
    data = image.astype(np.float64)
    # rows first when both scales are equal, else the axis with the smaller scale first
    order = (0, 1) if out_h / height <= out_w / width else (1, 0)
    for axis in order:
        size = (out_h, out_w)[axis]
        if size == data.shape[axis]:
            continue
        data = _resize_axis(data, size, axis, antialias)
        if integer:
            info = np.iinfo(image.dtype)
            data = np.clip(np.where(data >= 0, np.floor(data + 0.5), np.ceil(data - 0.5)), info.min, info.max)
    return data.astype(image.dtype)
