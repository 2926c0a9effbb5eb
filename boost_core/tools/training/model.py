"""The merge network's GAN (SPEC part two §A.5-§A.7): generator, PatchGAN discriminator, losses, one update.

* Generator: the pix2pix U-Net of ``boost_core.networks.models.merge_net`` (2 -> 1 channels, ngf 64, norm none).
  At the reference working size 1024 it is exactly ``unet_1024`` (10 downsamplings), whose state_dict the
  inference engine loads. A smaller working size (a power of two >= 32, for quick experiments) uses
  log2(size) downsamplings so the bottleneck stays 1x1; such a generator does **not** fit the engine.
* Discriminator: the 70x70 PatchGAN ``NLayerDiscriminator`` (3 conv layers + 2, ndf 64, norm none: no bias
  except the first and last conv), input ``cat([outer, inner, depth])``, raw logits (126x126 at 1024).
  State_dict keys ``model.{0,2,5,8,11}.weight``, ``model.0.bias``, ``model.11.bias``; 2,763,841 parameters.
* Initialisation: every Conv / ConvTranspose weight ~ N(0, 0.02), biases 0.
* Losses: vanilla GAN (``BCEWithLogitsLoss`` against all-ones / all-zeros maps) and λ_L1 = 1000 · L1 in [-1, 1].
  D: 0.5·(BCE(D(A, G(A).detach()), 0) + BCE(D(A, B), 1)); G: BCE(D(A, G(A)), 1) + λ·|G(A) - B|.
* Order per iteration: G forward; D step (Adam lr 2e-6); G step with D frozen (Adam lr 1e-4); betas (0.5, 0.999).
* Inputs (§A.5): outer, inner and gtfake are bilinearly resized (``align_corners=False``) to the working size;
  ``real_A = cat([outer, inner])`` (low-res first), ``real_B = gtfake``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

REFERENCE_SIZE = 1024
NDF = 64
INIT_GAIN = 0.02
LAMBDA_L1 = 1000.0
LR_G = 1e-4
LR_D = 2e-6
BETAS = (0.5, 0.999)


def num_downs_for(size: int) -> int:
    """Downsamplings of the U-Net for a working size: log2(size) (10 at 1024). ValueError for other sizes."""
    downs = round(math.log2(size)) if size > 0 else 0
    if size < 32 or 2 ** downs != size:
        raise ValueError(f"the working size must be a power of two of at least 32 (the reference: 1024), got {size}")
    return downs


def build_generator(size: int = REFERENCE_SIZE) -> nn.Module:
    """The merge generator for a working size, with untrained (not yet initialised) weights."""
    from ...networks.models import merge_net

    downs = num_downs_for(size)
    if downs == merge_net.NUM_DOWNS:
        return merge_net.build()
    return merge_net.UnetGenerator(2, 1, num_downs=downs, ngf=merge_net.NGF)


class Discriminator(nn.Module):
    """pix2pix ``NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3)`` with norm "none" (SPEC §A.6)."""

    def __init__(self, input_nc: int = 3, ndf: int = NDF):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1, bias=True), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for n in range(1, 3):  # the two further stride-2 layers
            out = ndf * min(2 ** n, 8)
            layers += [nn.Conv2d(channels, out, 4, 2, 1, bias=False), nn.Identity(), nn.LeakyReLU(0.2, True)]
            channels = out
        out = ndf * 8
        layers += [nn.Conv2d(channels, out, 4, 1, 1, bias=False), nn.Identity(), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(out, 1, 4, 1, 1, bias=True)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = INIT_GAIN, generator: torch.Generator | None = None) -> nn.Module:
    """pix2pix "normal" init: Conv/ConvTranspose weights ~ N(0, gain), biases 0. Returns ``net``."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.normal_(0.0, gain, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
    return net


class MergeGAN:
    """Generator, discriminator, their Adam optimisers and the pix2pix update (SPEC §A.7).

    size: working size (1024 = the reference; the generator then loads into the engine). device: torch device.
    seed: when given, the initial weights are drawn from ``torch.Generator().manual_seed(seed)``.
    """

    def __init__(self, size: int = REFERENCE_SIZE, device: str = "cpu", lambda_l1: float = LAMBDA_L1,
                 lr_g: float = LR_G, lr_d: float = LR_D, betas=BETAS, seed: int | None = None):
        self.size = size
        self.device = torch.device(device)
        self.lambda_l1 = float(lambda_l1)
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        self.netG = init_weights(build_generator(size), generator=rng).to(self.device)
        self.netD = init_weights(Discriminator(), generator=rng).to(self.device)
        self.base_lr = {"G": float(lr_g), "D": float(lr_d)}
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=lr_g, betas=tuple(betas))
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=lr_d, betas=tuple(betas))
        self.gan_loss = nn.BCEWithLogitsLoss()
        self.l1_loss = nn.L1Loss()

    # -- data
    def inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(real_A (N, 2, S, S), real_B (N, 1, S, S)) at the working size S from a batch of the dataset."""
        maps = []
        for key in ("outer", "inner", "gtfake"):
            x = batch[key].to(self.device, torch.float32)
            if x.shape[-2:] != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            maps.append(x)
        return torch.cat(maps[:2], 1), maps[2]

    # -- learning rate
    def set_lr_factor(self, factor: float) -> None:
        """Set each optimiser's learning rate to its base rate times ``factor``."""
        for name, optimizer in (("G", self.optimizer_G), ("D", self.optimizer_D)):
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr[name] * factor

    # -- one update
    def _d_loss(self, real_a, fake_b, real_b):
        pred_fake = self.netD(torch.cat([real_a, fake_b.detach()], 1))
        pred_real = self.netD(torch.cat([real_a, real_b], 1))
        loss_fake = self.gan_loss(pred_fake, torch.zeros_like(pred_fake))
        loss_real = self.gan_loss(pred_real, torch.ones_like(pred_real))
        return loss_fake, loss_real

    def step(self, batch: dict) -> dict[str, float]:
        """One training iteration; returns the losses {G_GAN, G_L1 (weighted), D_real, D_fake}."""
        self.netG.train()
        self.netD.train()
        real_a, real_b = self.inputs(batch)
        fake_b = self.netG(real_a)

        self.netD.requires_grad_(True)
        self.optimizer_D.zero_grad(set_to_none=True)
        loss_d_fake, loss_d_real = self._d_loss(real_a, fake_b, real_b)
        loss_d = 0.5 * (loss_d_fake + loss_d_real)
        loss_d.backward()
        self.optimizer_D.step()

        self.netD.requires_grad_(False)
        self.optimizer_G.zero_grad(set_to_none=True)
        pred = self.netD(torch.cat([real_a, fake_b], 1))
        loss_g_gan = self.gan_loss(pred, torch.ones_like(pred))
        loss_g_l1 = self.l1_loss(fake_b, real_b) * self.lambda_l1
        (loss_g_gan + loss_g_l1).backward()
        self.optimizer_G.step()
        self.netD.requires_grad_(True)
        losses = {"G_GAN": loss_g_gan, "G_L1": loss_g_l1, "D_real": loss_d_real, "D_fake": loss_d_fake}
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def l1(self, batch: dict) -> float:
        """Mean |G(A) - B| in [-1, 1] on a batch, without training (eval mode; the net has no dropout/norm)."""
        self.netG.eval()
        real_a, real_b = self.inputs(batch)
        return float(self.l1_loss(self.netG(real_a), real_b))
