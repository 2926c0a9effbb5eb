"""Swapping layers of a loaded model for faster equivalents, in place (the speed options of ``acceleration``)."""

from __future__ import annotations

from typing import Callable

from torch import nn


def swap_layers(model: nn.Module, qualifies: Callable[[nn.Module], bool],
                replacement: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every submodule ``m`` of ``model`` with ``qualifies(m)`` by ``replacement(m)``; returns the count."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and qualifies(child):
                parent._modules[name] = replacement(child)
                swapped += 1
    return swapped


__all__ = ["swap_layers"]
