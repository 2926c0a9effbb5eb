"""Training loop of the merge network (SPEC part two §A.7-§A.9): epochs, linear schedule, resumable checkpoints.

    result = train(TrainOptions(dataroot="data", checkpoints_dir="checkpoints/mergemodel"))

* Epochs: ``n_epochs`` (100) at the full learning rate then ``n_epochs_decay`` (100) decaying linearly. The
  reference updates its LambdaLR at the *start* of every epoch, so 1-based epoch e trains at
  ``1 - max(0, e + 1 - n_epochs) / (n_epochs_decay + 1)``: epochs 1-99 at 1, epoch 100 at 100/101, ...,
  ⚠ the last epoch (200) at 0 (it does not learn). Kept as the reference has it.
* Batch size 1, shuffled, no augmentation, no mixed precision, no gradient clipping (the reference's defaults).
* Checkpoints in ``checkpoints_dir``: ``latest_net_G.pth`` / ``latest_net_D.pth`` (plain state_dicts on the CPU,
  no ``module.`` prefix: the layout the engine loads as the merge network) and ``latest_state.pth`` (epochs
  done, iterations, both optimisers' states, the working size), written after every epoch and at a stop;
  every ``save_epoch_freq`` epochs also ``<epoch>_net_G.pth`` / ``<epoch>_net_D.pth``. All files are written
  to a temp name first, then renamed. ``loss_log.txt`` gets one line per ``print_freq`` iterations.
* Resume (``resume=True``): loads the three latest files and continues with the next epoch. A run stopped in
  the middle of an epoch (``max_steps``, Ctrl-C) keeps its weights, but that epoch is redone from its start.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "latest_state.pth"
LOG_FILE = "loss_log.txt"
STATE_FORMAT = 1


@dataclass
class TrainOptions:
    """Training settings; defaults are the reference's (SPEC §A.7-§A.8).

    size: working size of the generator (1024; a smaller power of two for quick experiments, not loadable by
    the engine). max_steps: stop after this many iterations in total (None: run all epochs).
    guided: apply the training guided filters (§A.4); gf_radius: their radius (64).
    """

    dataroot: str | Path
    checkpoints_dir: str | Path
    size: int = 1024
    n_epochs: int = 100
    n_epochs_decay: int = 100
    batch_size: int = 1
    save_epoch_freq: int = 10
    print_freq: int = 100
    device: str = "cpu"
    seed: int | None = None
    max_steps: int | None = None
    workers: int = 0
    guided: bool = True
    gf_radius: int = 64
    lambda_l1: float = 1000.0
    lr_g: float = 1e-4
    lr_d: float = 2e-6
    beta1: float = 0.5
    resume: bool = False


@dataclass
class TrainResult:
    """What a call to :func:`train` did: epochs completed in total, iterations in total, this call's iterations,
    the last iteration's losses and the checkpoint files."""

    epochs_done: int
    steps: int
    steps_this_run: int
    losses: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    stopped_early: bool = False


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Learning-rate multiplier during 1-based ``epoch`` (the reference's schedule, see the module docstring)."""
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


def save_atomic(files: dict[Path, object]) -> None:
    """torch.save each object to a temp file in its folder, then rename them all into place."""
    import torch

    temps: dict[Path, Path] = {}
    try:
        for path, obj in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            temps[path] = Path(name)
            with os.fdopen(fd, "wb") as f:
                torch.save(obj, f)
        for path in files:
            os.replace(temps.pop(path), path)
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise


def cpu_state_dict(module) -> dict:
    """A module's state_dict with every tensor copied to the CPU (no ``module.`` prefix)."""
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def save_checkpoint(gan, directory: Path, epochs_done: int, steps: int, options: TrainOptions,
                    tag: str | None = None) -> dict[str, Path]:
    """Write latest_net_G/D.pth and latest_state.pth (and <tag>_net_G/D.pth when ``tag``); returns the paths."""
    from .model import num_downs_for

    g, d = cpu_state_dict(gan.netG), cpu_state_dict(gan.netD)
    state = {
        "format": STATE_FORMAT, "epochs_done": epochs_done, "steps": steps, "size": gan.size,
        "num_downs": num_downs_for(gan.size), "optimizer_G": gan.optimizer_G.state_dict(),
        "optimizer_D": gan.optimizer_D.state_dict(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
    }
    files = {directory / "latest_net_G.pth": g, directory / "latest_net_D.pth": d}
    if tag is not None:
        files[directory / f"{tag}_net_G.pth"] = g
        files[directory / f"{tag}_net_D.pth"] = d
    files[directory / STATE_FILE] = state  # last, so a state file never predates its weights
    save_atomic(files)
    return {path.name: path for path in files}


def load_checkpoint(gan, directory: Path) -> dict:
    """Load latest_net_G/D.pth strictly and the optimisers from latest_state.pth into ``gan``; return the state."""
    import torch

    from ...networks.checkpoint import load_strict, read_state_dict

    directory = Path(directory)
    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"cannot resume: {state_path} does not exist (train without --resume first, "
                                "or point --checkpoints at the folder of an earlier run)")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{state_path} is not a training state this version understands")
    if state["size"] != gan.size:
        raise ValueError(f"the checkpoints in {directory} were trained at size {state['size']}, not {gan.size}; "
                         f"resume with --size {state['size']}")
    for name, net in (("G", gan.netG), ("D", gan.netD)):
        path = directory / f"latest_net_{name}.pth"
        title = "the merge generator" if name == "G" else "the PatchGAN discriminator"
        load_strict(net, read_state_dict(path, network_title=title), path, title)
    gan.optimizer_G.load_state_dict(state["optimizer_G"])
    gan.optimizer_D.load_state_dict(state["optimizer_D"])
    return state


def train(options: TrainOptions, log: Callable[[str], None] = print, cancel=None) -> TrainResult:
    """Train (or resume training) the merge GAN on ``options.dataroot/train`` (see the module docstring)."""
    import torch

    from .dataset import MergeDataset
    from .model import MergeGAN

    directory = Path(options.checkpoints_dir)
    dataset = MergeDataset(options.dataroot, "train", guided=options.guided, gf_radius=options.gf_radius)
    if options.seed is not None:
        torch.manual_seed(options.seed)
    gan = MergeGAN(options.size, options.device, options.lambda_l1, options.lr_g, options.lr_d,
                   (options.beta1, 0.999), seed=options.seed)
    epochs_done, steps = 0, 0
    if options.resume:
        state = load_checkpoint(gan, directory)
        epochs_done, steps = int(state["epochs_done"]), int(state["steps"])
        log(f"resumed from {directory}: {epochs_done} epochs, {steps} iterations done")
    shuffle = torch.Generator().manual_seed(options.seed + epochs_done) if options.seed is not None else None
    loader = torch.utils.data.DataLoader(dataset, batch_size=options.batch_size, shuffle=True,
                                         num_workers=options.workers, generator=shuffle)
    total_epochs = options.n_epochs + options.n_epochs_decay
    result = TrainResult(epochs_done, steps, 0)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / LOG_FILE
    log(f"{len(dataset)} samples, working size {options.size}, device {options.device}, "
        f"epochs {epochs_done + 1}..{total_epochs}")

    def stop_requested() -> bool:
        return (options.max_steps is not None and steps >= options.max_steps) or \
            (cancel is not None and cancel.is_set())

    unsaved = False
    try:
        for epoch in range(epochs_done + 1, total_epochs + 1):
            if stop_requested():
                result.stopped_early = True
                break
            factor = lr_factor(epoch, options.n_epochs, options.n_epochs_decay)
            gan.set_lr_factor(factor)
            started = time.perf_counter()
            for batch in loader:
                if stop_requested():
                    break
                result.losses = gan.step(batch)
                steps += 1
                result.steps_this_run += 1
                unsaved = True
                if steps % options.print_freq == 0:
                    _log_losses(log, log_path, epoch, steps, result.losses, factor)
            else:
                epochs_done = epoch
                _log_losses(log, log_path, epoch, steps, result.losses, factor,
                            note=f"end of epoch ({time.perf_counter() - started:.1f} s)")
                tag = str(epoch) if epoch % options.save_epoch_freq == 0 else None
                result.files = save_checkpoint(gan, directory, epochs_done, steps, options, tag)
                unsaved = False
                continue
            result.stopped_early = True
            break
    except KeyboardInterrupt:
        result.stopped_early = True
        log("interrupted: saving the latest checkpoint")
    if unsaved or not result.files:
        result.files = save_checkpoint(gan, directory, epochs_done, steps, options)
    result.epochs_done, result.steps = epochs_done, steps
    return result


def _log_losses(log, path: Path, epoch: int, steps: int, losses: dict, factor: float, note: str = "") -> None:
    text = " ".join(f"{k}: {v:.4f}" for k, v in losses.items())
    line = f"(epoch: {epoch}, iters: {steps}, lr factor: {factor:.4f}) {text}{' ' + note if note else ''}"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    log(line)
