"""Reading official checkpoint files and loading them strictly into a network.

Official files come in a few layouts (SPEC §10, part two §D.3):

* a plain state_dict (key -> tensor): the merge net ``latest_net_G.pth``, MiDaS ``model.pt``;
* ``{'model': state_dict, 'optimizer': ...}``: also accepted by MiDaS's own loader;
* ``{'depth_model': state_dict, ...}``: LeReS ``res101.pth``;
* ``{'state_dict': state_dict, ...}``: SGR ``model.pth.tar``;

and the state_dict's keys may all carry DataParallel's ``module.`` prefix (SGR always does, LeReS
may). Files are always read with ``torch.load(weights_only=True)``: no arbitrary unpickling.

Every failure (missing, truncated or corrupt file, a file of another network) raises
:class:`CheckpointError`, whose message names the file, the network expected, what was wrong and
what to do about it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

#: wrapper keys tried, in order, when the file is a dict that is not itself a state_dict
DEFAULT_WRAPPERS: tuple[str, ...] = ("model", "depth_model", "state_dict")

_PREFIX = "module."
_EXAMPLES = 3  # how many key names an error message quotes


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: missing, unreadable, or not the network's weights."""


def read_state_dict(
    path,
    wrappers: tuple[str, ...] = DEFAULT_WRAPPERS,
    *,
    network_title: str = "the network",
    weights_name: str | None = None,
) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its state_dict (key -> CPU tensor).

    path: the file. wrappers: keys that may hold the state_dict in a dict-shaped file, tried in order
    (a file whose values are all tensors is a plain state_dict and is returned as it is).
    A ``module.`` prefix is removed when every key has it.
    network_title / weights_name only make error messages useful: the network the file is meant for
    ("MiDaS v2") and its weights-registry name ("midas_v2"), used in the download hint.

    Raises CheckpointError for a missing, truncated, corrupt or unsafe file, or one holding no state_dict.
    """
    path = Path(path)
    where = f"{network_title} weights file {str(path)!r}"
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"{where} {what}; {_download_hint(weights_name)}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except OSError as exc:  # permission denied, I/O error: the file itself may be fine
        reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        raise CheckpointError(f"{where} cannot be opened ({reason})") from exc
    except Exception as exc:  # RuntimeError, UnpicklingError, EOFError, KeyError...: depends on the damage
        reason = _torch_reason(exc)
        if _refused_by_weights_only(exc) or _pickle_runs_code(path):
            raise CheckpointError(
                f"{where} refused: not a plain weights file (it would run code when loaded); "
                f"it was not loaded. Use the official file: {_download_hint(weights_name)}") from None
        else:
            what = "cannot be read: it is truncated, corrupt or not a torch checkpoint"
            fix = f"Delete it and get it again: {_download_hint(weights_name)}"
        size = os.path.getsize(path)
        raise CheckpointError(f"{where} {what} ({reason}; file size {size} bytes). {fix}") from exc
    return unwrap_state_dict(obj, wrappers, where=where)


def unwrap_state_dict(obj, wrappers: tuple[str, ...] = DEFAULT_WRAPPERS, *, where: str = "checkpoint"):
    """The state_dict inside an object returned by torch.load, with a shared ``module.`` prefix removed.

    Returns a new plain dict (key -> tensor); raises CheckpointError when none is found.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    if not obj:
        raise CheckpointError(f"{where} holds an empty dict, not a state_dict")
    sd = obj
    if not _is_state_dict(obj):
        for key in wrappers:
            if isinstance(obj.get(key), Mapping) and _is_state_dict(obj[key]):
                sd = obj[key]
                break
        else:
            keys = ", ".join(repr(k) for k in list(obj)[:8])
            raise CheckpointError(
                f"{where} is a dict without a state_dict: its top-level keys are {keys}"
                f"{' ...' if len(obj) > 8 else ''}; expected tensors, or one of "
                f"{', '.join(repr(w) for w in wrappers)} holding them"
            )
    keys = list(sd)
    if all(isinstance(k, str) and k.startswith(_PREFIX) for k in keys):
        return {k[len(_PREFIX):]: v for k, v in sd.items()}
    return dict(sd)


def _refused_by_weights_only(exc: Exception) -> bool:
    """torch's safe unpickler refused the file (a global, a reduce, a build it does not allow), as opposed to
    a damaged file: such a file would run code under ``weights_only=False``, so it is never suggested."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return False
    reason = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
    # what the safe unpickler names when it meets an object it will not build (as opposed to bytes it cannot
    # parse, e.g. "Unsupported operand 95" for random data, or a truncated stream)
    refusals = ("global", "reduce", "build", "class", "inst", "callable")
    return any(word in reason.lower() for word in refusals)


#: modules whose globals a plain torch checkpoint refers to (tensor rebuilding, OrderedDict, bytes decoding)
_PLAIN_MODULES = ("torch", "collections", "_codecs")


def _pickle_runs_code(path: Path, limit: int = 64 * 1024 * 1024) -> bool:
    """Whether the file (a plain pickle, or torch's zip with a ``data.pkl``) is a well-formed pickle that imports
    something a plain checkpoint never does (``os.system``, ``builtins.eval``, any non-torch class) or instantiates
    with INST / OBJ. Random or truncated bytes are not (they do not parse): those are damaged files."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(member) if member else b""
        elif path.stat().st_size <= limit:
            data = path.read_bytes()
        else:
            return False
        strings: list[str] = []
        modules: list[str] = []
        for opcode, arg, _pos in pickletools.genops(data):
            if opcode.name in ("INST", "OBJ"):
                return True
            if opcode.name == "GLOBAL":
                modules.append(str(arg).split(" ", 1)[0])
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                modules.append(strings[-2])
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - does not parse: damaged, not malicious
        return False
    return any(module.split(".")[0] not in _PLAIN_MODULES for module in modules)


def _torch_reason(exc: Exception) -> str:
    """The useful part of a torch.load error, on one line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # skip torch's generic advice around the actual reason
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = text.split(". Please use", 1)[0]
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _is_state_dict(obj) -> bool:
    return len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _download_hint(weights_name: str | None) -> str:
    if weights_name:
        return f"download it with `python -m boost_core weights download {weights_name}`"
    return "check the path, or download the file again"


def describe_mismatch(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state_dict`` from loading strictly into ``module``, in words; None when it fits.

    BatchNorm ``num_batches_tracked`` buffers may be absent (files saved by torch 0.4.0 lack them;
    BatchNorm fills them in), so their absence is not a mismatch.
    """
    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state_dict]
    if all(k.endswith(".num_batches_tracked") for k in missing):
        missing = []
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        (k, tuple(state_dict[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key{'s' * (len(missing) != 1)} such as {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected such as {_some(unexpected)}")
    if shapes:
        k, got, want = shapes[0]
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        problems.append(f"shape mismatch for {k}: file {got} vs model {want}{more}")
    return "; ".join(problems) if problems else None


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:_EXAMPLES])
    return shown + (", ..." if len(keys) > _EXAMPLES else "")


def load_strict(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path,
    network_title: str,
    *,
    hint: str | None = None,
    assign: bool = False,
) -> torch.nn.Module:
    """Load ``state_dict`` into ``module`` strictly (every key, every shape); return ``module``.

    path and network_title name the file and the network in the error; hint is appended to it
    (default: "is this the right file for <network_title>?"). assign=True replaces the module's tensors
    by the file's (use it for a module built on the "meta" device: no memory is spent on a random init).
    Raises CheckpointError when the keys or shapes do not match.
    """
    hint = hint or f"is this the right file for {network_title}?"
    problem = describe_mismatch(module, state_dict)
    if problem is None:
        try:
            module.load_state_dict(dict(state_dict), strict=True, assign=assign)
        except RuntimeError as exc:  # e.g. a dtype that cannot be copied; keys and shapes were fine
            problem = " ".join(str(exc).split())[:400]
    if problem is not None:
        raise CheckpointError(
            f"{str(Path(path))!r} does not hold the weights of {network_title}: {problem}. {hint}"
        )
    return module
