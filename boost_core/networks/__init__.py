"""Neural networks of the pipeline: the base depth networks, the merge network and their registry.

* ``registry``: every base network described as data (receptive field, input preparation, output
  kind, weight names); ``get(name)``, ``names()``, ``load_base(net, path)``, ``load_merge_net(path)``.
* ``checkpoint``: reading official checkpoint files safely (``weights_only=True``) and loading them
  strictly, with errors that name the file and what was wrong.
* ``estimate``: one base-network pass on an image (``single_estimate``), as the reference does it.
* one module per family, each with ``build() -> torch.nn.Module`` (architecture only):
  ``midas_v2``, ``leres``, ``sgr``, ``merge_net``; ``resnext`` holds the shared ResNet/ResNeXt encoder.

Importing this package (or ``registry``) does not import torch; the other modules do.
"""
