"""Speed-ups of the loaded networks that keep parity with the reference (float32 rounding only), chosen by
``acceleration.Acceleration`` and applied by ``acceleration.accelerate_networks``.

* ``acceleration``: the options and their application (BatchNorm folding, channels-last, layer swaps, autocast).
* ``allocator``: glibc heap settings so freed activation maps are reused instead of page-faulted back.
* ``layer_swap``: the one loop that swaps qualifying layers for faster equivalents.
* ``winograd`` / ``winograd_stride2``: Winograd F(4x4, 3x3) / F(6x6, 3x3) and F(4x4, 2x2) convolutions.
* ``upconv_gemm`` / ``upsample_conv``: exact rewrites of the merge net's last up-convolution and MiDaS v2's head.
* ``fused_activations``: ReLUs and residual sums of the ResNet bottlenecks as oneDNN post-ops.
* ``unet_concat``: the merge net's skip concatenations written in place (with the parent's ReLU).
* ``kernels/``: the Winograd transforms in C, compiled with the system compiler and loaded with ctypes.
"""
