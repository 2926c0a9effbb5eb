"""Training the merge network (SPEC part two §A): dataset preparation and the pix2pix GAN training.

* ``dataset``: whole-image base estimates at two resolutions, crops on the reference's grids, the proxy ground
  truth (``prepare_dataset``); the training/test sample reader with its guided filters (``MergeDataset``).
* ``imresize``: MATLAB's ``imresize`` (bicubic, antialiased when shrinking), used for the crops.
* ``guided_filter``: He et al.'s guided filter (box-filter form), used on the training inputs.
* ``model``: the PatchGAN discriminator, weight initialisation, and one GAN update (``MergeGAN``).
* ``train``: epochs, the linear learning-rate schedule, checkpoints (resumable) in the layout the engine loads.
* ``dataset_cli`` / ``train_cli``: ``python -m boost_core prepare-dataset`` and ``python -m boost_core train``.

Importing this package is cheap (no torch).
"""
