"""Training the merge network (SPEC part two §A): dataset preparation and the pix2pix GAN training.

* ``dataset``: whole-image base estimates at two resolutions, crops on the reference's grids, the proxy ground
  truth (``prepare_dataset``); the training/test sample reader with its guided filters (``MergeDataset``).
* ``imresize``: MATLAB's ``imresize`` (bicubic, antialiased when shrinking), used for the crops.
* ``guided_filter``: He et al.'s guided filter (box-filter form), used on the training inputs.
* ``model``: the PatchGAN discriminator, weight initialisation, and one GAN update (``MergeGAN``).
* ``train``: epochs, the linear learning-rate schedule, checkpoints (resumable) in the layout the engine loads.
* the command lines are ``boost_core.cli.prepare_dataset`` and ``boost_core.cli.train``.

Importing this package is cheap (no torch).
"""
