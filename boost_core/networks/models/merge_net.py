"""The merge network: pix2pix ``UnetGenerator`` "unet_1024" (2 -> 1 channels, ngf 64, 10 downs, norm none).

State_dict of the official ``latest_net_G.pth`` (21 tensors, 79.56 M parameters, SPEC §10a), keys such as
``model.model.0.weight`` (64, 2, 4, 4) ... ``model.model.3.{weight,bias}``: each nested block's
Sequential adds ``.model.<i>``; in a middle block slot 1 is the down-conv, slot 3 the sub-block and
slot 5 the up-conv; in the innermost block the up-conv is slot 3. Norm "none" means Identity slots
without parameters and **no bias anywhere except the outermost ConvTranspose2d**.

Forward: (N, 2, 1024, 1024) float32 = [low-res estimate, high-res estimate], each scaled to [-1, 1] ->
(N, 1, 1024, 1024) float32 in [-1, 1] (tanh). The side must be a multiple of 1024 (the bottleneck is 1x1).

In-place activation quirk kept: every non-outermost block starts with an in-place LeakyReLU(0.2) on
its input, so the skip half of its ``cat([x, block(x)])`` output is ``leaky_relu(x)``, not ``x``. (The
parent block applies a ReLU to that output before using it, so either form gives the same numbers.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_DOWNS = 10
NGF = 64


class UnetBlock(nn.Module):
    """One level of the U-Net. ``model`` is a Sequential whose slots match the official key names.

    outermost: [down, sub, ReLU, up (bias), Tanh]  -> tanh(up(relu(sub(down(x)))))
    innermost: [LeakyReLU, down, ReLU, up, Id]      -> cat([h, up(relu(down(h)))]),      h = leaky(x)
    middle:    [LeakyReLU, down, Id, sub, ReLU, up, Id] -> cat([h, up(relu(sub(down(h))))]), h = leaky(x)
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False):
        super().__init__()
        self.outermost = outermost
        self.innermost = innermost
        input_nc = outer_nc if input_nc is None else input_nc
        down = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=False)
        if outermost:
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=True)
            layers = [down, submodule, nn.ReLU(), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=False)
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), up, nn.Identity()]
        else:
            up = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=False)
            layers = [nn.LeakyReLU(0.2), down, nn.Identity(), submodule, nn.ReLU(), up, nn.Identity()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Activations in place where they act on a tensor this net just made (every one but the input's)."""
        m = self.model
        if self.outermost:
            return torch.tanh_(m[3](F.relu_(m[1](m[0](x)))))
        # x is the parent's down-convolution output, used nowhere else: in place, as in the reference
        h = F.leaky_relu_(x, 0.2)
        if self.innermost:
            return torch.cat([h, m[3](F.relu_(m[1](h)))], 1)
        return torch.cat([h, m[5](F.relu_(m[3](m[1](h))))], 1)


class UnetGenerator(nn.Module):
    """``model`` = the outermost UnetBlock (hence keys ``model.model.*``)."""

    def __init__(self, input_nc: int = 2, output_nc: int = 1, num_downs: int = NUM_DOWNS, ngf: int = NGF):
        super().__init__()
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block)
        block = UnetBlock(ngf * 4, ngf * 8, submodule=block)
        block = UnetBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetBlock(ngf, ngf * 2, submodule=block)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build() -> UnetGenerator:
    """The unet_1024 merge generator with untrained weights (load a checkpoint into it)."""
    return UnetGenerator()
