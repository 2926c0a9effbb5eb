"""Neural networks of the pipeline: the base depth networks, the merge network and their registry.

* ``registry``: every base network described as data (receptive field, input preparation, output kind, weight
  names); ``get(name)``, ``names()``, ``family(module)``, ``load_base(net, path)``, ``load_merge_net(path)``.
* ``checkpoint``: reading official checkpoint files safely (``weights_only=True``) and loading them strictly, with
  errors that name the file and what was wrong.
* ``estimate``: one base-network pass on an image (``single_estimate``), as the reference does it.
* ``models/``: one module per family (``build()``, architecture only); ``layers/``: the backbones they share.

Importing this package (or ``registry``) does not import torch; the other modules do.
"""
