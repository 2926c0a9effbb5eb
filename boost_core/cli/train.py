"""``python -m boost_core train --dataroot DATAROOT --checkpoints DIR [options]``: train the merge network.

The reference's ``pix2pix/train.py --model pix2pix4depth`` (SPEC part two §A.5-§A.9): vanilla GAN + 1000·L1,
Adam (G 1e-4, D 2e-6, betas 0.5/0.999), 100 + 100 epochs with the linear decay, batch 1, working size 1024.
Writes ``DIR/latest_net_G.pth`` (the file ``--merge-weights`` takes), ``latest_net_D.pth``,
``latest_state.pth`` after every epoch, ``<epoch>_net_[GD].pth`` every ``--save-epoch-freq`` epochs, and
``loss_log.txt``. ``--resume`` continues from the latest files. Ctrl-C saves before stopping.

``--size`` below 1024 (a power of two, e.g. 256) trains a shallower U-Net for quick experiments; its generator
does not fit the inference engine, which needs 1024.

Exit codes: 0 done (or stopped by --max-steps); 2 bad arguments or dataset; 130 interrupted (saved).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m boost_core train",
        description="Train the merge network (pix2pix U-Net + PatchGAN) on a prepared dataset "
                    "(python -m boost_core prepare-dataset).")
    parser.add_argument("--dataroot", type=Path, required=True, help="dataset folder holding train/")
    parser.add_argument("--checkpoints", type=Path, required=True, help="folder for the checkpoint files")
    parser.add_argument("--size", type=int, default=1024,
                        help="working size (default 1024, the reference; a smaller power of two such as 256 for "
                             "quick experiments, not usable by the engine)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs at the full learning rate (100)")
    parser.add_argument("--epochs-decay", type=int, default=100, help="epochs of linear decay (100)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--save-epoch-freq", type=int, default=10, help="keep <epoch>_net_*.pth every N epochs")
    parser.add_argument("--print-freq", type=int, default=100, help="log the losses every N iterations")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N iterations in total")
    parser.add_argument("--seed", type=int, default=None, help="seed the initial weights and the shuffling")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0)")
    parser.add_argument("--no-guided-filter", action="store_true",
                        help="skip the training inputs' guided filters (the reference applies them)")
    parser.add_argument("--gf-radius", type=int, default=64, help="guided-filter radius (64)")
    parser.add_argument("--lambda-l1", type=float, default=1000.0, help="weight of the L1 loss (1000)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoints")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..host.devices import resolve_device
    from ..host.signals import terminate_as_interrupt
    from ..tools.training.model import REFERENCE_SIZE, num_downs_for
    from ..tools.training.train import TrainOptions, train

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        num_downs_for(args.size)
    except ValueError as error:
        parser.error(str(error))
    for name in ("epochs", "batch_size", "save_epoch_freq", "print_freq", "gf_radius"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.epochs_decay < 0 or (args.max_steps is not None and args.max_steps < 0):
        parser.error("--epochs-decay and --max-steps cannot be negative")
    if args.size != REFERENCE_SIZE:
        print(f"note: --size {args.size} trains a {num_downs_for(args.size)}-level U-Net; the engine's merge "
              f"step needs the {REFERENCE_SIZE} one, so these weights are for experiments only", file=sys.stderr)
    terminate_as_interrupt()
    try:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        options = TrainOptions(
            dataroot=args.dataroot, checkpoints_dir=args.checkpoints, size=args.size, n_epochs=args.epochs,
            n_epochs_decay=args.epochs_decay, batch_size=args.batch_size, save_epoch_freq=args.save_epoch_freq,
            print_freq=args.print_freq, device=device, seed=args.seed, max_steps=args.max_steps,
            workers=args.workers, guided=not args.no_guided_filter, gf_radius=args.gf_radius,
            lambda_l1=args.lambda_l1, resume=args.resume)
        result = train(options, log=lambda line: print(line, flush=True))
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{result.epochs_done} epochs, {result.steps} iterations done ({result.steps_this_run} in this run); "
          f"generator: {result.files.get('latest_net_G.pth')}", flush=True)
    if result.stopped_early and (args.max_steps is None or result.steps < args.max_steps):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
