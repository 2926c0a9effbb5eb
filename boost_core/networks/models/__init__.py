"""One module per network family, each with ``build() -> torch.nn.Module`` (architecture only, parameter names
as in the official checkpoints): ``midas_v2``, ``leres``, ``sgr``, ``depth_anything_v2``, ``midas_dpt`` (MiDaS
3.x DPT), ``merge_net`` (the pix2pix U-Net). ``networks.registry.family(name)`` imports one."""
