"""Boost Depth's engine: the paper's method (resolution search, double estimation, local boosting) as plain Python,
numpy, torch and OpenCV. It never imports bpy; Blender runs it as ``python -m boost_core`` in a child process.

    algorithm/   the paper's stages: resolution search, double estimation, patches, merging, local boosting,
                 ``pipeline.boost`` (the orchestration) and ``depth_networks`` (timed, batched forwards)
    networks/    the base depth networks and the merge network: ``registry`` (configs as data), ``estimate``
                 (one network pass as the reference runs it), ``checkpoint``, ``models/`` (one module per family)
                 and ``layers/`` (backbones and blocks the models share)
    speed/       parity-safe speed-ups of the loaded models (BatchNorm folding, channels-last, Winograd, layer
                 rewrites, the heap), with ``kernels/`` (the Winograd transforms compiled from C)
    weights/     the model store: ``catalogue`` (the weight files as data), ``store`` (the models folder,
                 locate, verify, download) and ``download`` (resumable, verified HTTP)
    host/        process support: the engine child's runner (``engine_process``), signals, devices, peak memory,
                 the dependency installer
    tools/       research tools beside the method: Boost Your Own Depth, evaluation, training the merge network
    cli/         ``python -m boost_core`` and its subcommands
    image_io     reading photos and depth maps, writing depth files atomically
    normalise    the one min-max normalisation

Importing this package, ``networks.registry``, ``weights`` or ``host`` is cheap (no torch), so Blender-side code
may read the registries without paying for torch.
"""

__version__ = "0.1.0"
