"""The paper's method (Miangoleh, Dille et al., CVPR 2021), one stage a module.

* ``resolution``: edge map, the R0 / R20 search, the edge-density measure (SPEC §3).
* ``depth_networks``: the loaded base and merge networks, timed forwards, batching of equal-size inputs.
* ``double_estimation``: base estimates at two resolutions fused by the merge network (§4).
* ``patches``: Final's patch grid, selection, growth and order (§5).
* ``merging``: aligning a patch estimate to the base, feathered blending, cubic resizes (§5).
* ``local_boosting``: Final's loop over the patches (one at a time or batched) on a ``PatchCanvas``.
* ``pipeline``: ``boost(image, net, mode, ...)`` end to end, reading like the paper; ``load_networks``.
* ``progressive``: the job clock (``elapsed_s`` / ``eta_s`` on events) and Final's intermediate maps.
"""
