"""Which torch device a job runs on."""

from __future__ import annotations


def resolve_device(requested: str) -> str:
    """"auto" -> cuda, else mps, else cpu; an explicit unavailable device is an error naming the fix."""
    import torch

    cuda, mps = torch.cuda.is_available(), bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise RuntimeError("--device cuda asked for, but this torch build sees no CUDA GPU (use --device cpu, "
                           "or install a CUDA build of torch)")
    if requested == "mps" and not mps:
        raise RuntimeError("--device mps asked for, but Apple MPS is not available here (use --device cpu)")
    return requested
