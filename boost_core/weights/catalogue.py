"""The catalogue of weight files, as data: every file a network can load (name, file name, official URLs, size,
SHA-256, licence and what it means), plus a studio's own entries from the JSON file named by
``BOOST_DEPTH_REGISTRY``. No I/O beyond reading that JSON file; ``store`` finds, verifies and downloads the files.

    get("merge_net").filename    # "latest_net_G.pth"
    names()                      # registry names in display order, studio entries included
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_REGISTRY = "BOOST_DEPTH_REGISTRY"  # a studio's JSON file of extra / overriding WeightFile entries


@dataclass(frozen=True, kw_only=True)
class WeightFile:
    """One weight file.

    ``urls``: official addresses, tried in order (empty for manual downloads). ``size``: bytes, or
    ``None`` when unknown. ``sha256``: 64 lowercase hex digits when published, else ``None`` (TOFU).
    ``sha256_prefix``: leading hex digits carried by the file name (torch.hub style), checked too.
    ``licence``: short name; ``licence_note``: what it means for the user, with a link.
    ``manual``: the file cannot be fetched automatically; ``manual_instructions`` says how to get
    it (``{models_dir}`` and ``{filename}`` are filled in by :func:`instructions`).
    ``networks``: names of the networks (``boost_core.networks``) that load this file.
    ``requires_acceptance``: the licence restricts use (academic / non-commercial): show it and ask
    before downloading. ``title``: a human name for menus.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    licence: str
    licence_note: str
    networks: tuple[str, ...]
    sha256_prefix: str | None = None
    manual: bool = False
    manual_instructions: str = ""
    requires_acceptance: bool = False
    title: str = ""


_HF_ANNOTATORS = (
    "https://huggingface.co/lllyasviel/Annotators/resolve/5bc80eec2b4fddbb743c1e9329e3bd94b2cae14d"
)
_MIT_MIDAS = "MIT licence (https://github.com/isl-org/MiDaS/blob/master/LICENSE)."
_CC_BY_NC = (
    "Creative Commons Attribution-NonCommercial 4.0: non-commercial use only "
    "(https://creativecommons.org/licenses/by-nc/4.0/)."
)

_ENTRIES = (
    WeightFile(
        name="merge_net",
        title="Merge network (BMD pix2pix)",
        filename="latest_net_G.pth",
        urls=(
            f"{_HF_ANNOTATORS}/latest_net_G.pth",
            "https://sfu.ca/~yagiz/CVPR21/latest_net_G.pth",
        ),
        size=318268048,
        sha256="50ec735d74ed6499562d898f41b49343e521808b8dae589aa3c2f5c9ac9f7462",
        licence="Academic use only",
        licence_note=(
            "The merge network of 'Boosting Monocular Depth Estimation Models to High-Resolution' "
            "(Miangoleh, Dille et al., CVPR 2021) is licensed for academic, non-commercial use only, and "
            "the method may be covered by patents. Read "
            "https://github.com/compphoto/BoostingMonocularDepth/blob/main/LICENSE before downloading; "
            "commercial use needs the authors' permission."
        ),
        networks=("merge_net",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="midas_v2",
        title="MiDaS v2",
        filename="model-f46da743.pt",
        urls=("https://github.com/intel-isl/MiDaS/releases/download/v2/model-f46da743.pt",),
        size=None,
        sha256=None,
        sha256_prefix="f46da743",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("midas_v2",),
    ),
    WeightFile(
        name="midas_v21",
        title="MiDaS v2.1 (same network as v2)",
        filename="midas_v21-f6b98070.pt",
        urls=(
            "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_384.pt",
            "https://github.com/AlexeyAB/MiDaS/releases/download/midas_dpt/midas_v21-f6b98070.pt",
        ),
        size=422509849,
        sha256="f6b980704cfd7259c7cc2b058c2f160159c55e84b3b6c08331b4156a84629f70",
        sha256_prefix="f6b98070",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("midas_v2",),
    ),
    WeightFile(
        name="leres",
        title="LeReS ResNeXt-101",
        filename="res101.pth",
        urls=(f"{_HF_ANNOTATORS}/res101.pth",),
        size=530760553,
        sha256="1d696b2ef3e8336b057d0c15bc82d2fecef821bfebe5ef9d7671a5ec5dde520b",
        licence="Non-commercial, no redistribution",
        licence_note=(
            "LeReS weights (Adobe Research licence): non-commercial use only, no redistribution. Read "
            "https://github.com/aim-uofa/AdelaiDepth/blob/main/LeReS/LICENSE before downloading."
        ),
        networks=("leres",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="sgr",
        title="SGR (Structure-Guided Ranking Loss)",
        filename="model.pth.tar",
        urls=(),
        size=None,
        sha256=None,
        licence="Non-commercial research only",
        licence_note=(
            "SGR weights: non-commercial research use only "
            "(https://github.com/KexianHust/Structure-Guided-Ranking-Loss)."
        ),
        manual=True,
        manual_instructions=(
            "The SGR weights are shared only through Google Drive, which cannot be downloaded "
            "automatically.\n"
            "  1. Open https://drive.google.com/file/d/1p8c8-nUTNry5usQmGdTC2TrwWrp3dQ0y/view in a "
            "browser and download the file.\n"
            "  2. Save it as {filename} in {models_dir}\n"
            "  3. Run: {command} verify sgr{models_dir_option}\n"
            "     (this records its SHA-256, so later corruption is caught)."
        ),
        networks=("sgr",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="dpt_beit_large_512",
        title="MiDaS 3.1 BEiT-L 512",
        filename="dpt_beit_large_512.pt",
        urls=("https://github.com/isl-org/MiDaS/releases/download/v3_1/dpt_beit_large_512.pt",),
        size=1581966003,
        sha256="9e9e900747e9e8b3112df716979219836a27716277b3d0dc53889cbba8b82328",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("dpt_beit_large_512",),
    ),
    WeightFile(
        name="dpt_hybrid_384",
        title="MiDaS 3.0 DPT-Hybrid",
        filename="dpt_hybrid_384.pt",
        urls=(
            "https://github.com/isl-org/MiDaS/releases/download/v3/dpt_hybrid_384.pt",
            "https://github.com/intel-isl/DPT/releases/download/1_0/dpt_hybrid-midas-501f0c75.pt",
        ),
        size=492757791,
        sha256="501f0c75b3bca7daec6b3682c5054c09b366765aef6fa3a09d03a5cb4b230853",
        sha256_prefix="501f0c75",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("dpt_hybrid_384",),
    ),
    WeightFile(
        name="dpt_large_384",
        title="MiDaS 3.0 DPT-Large",
        filename="dpt_large_384.pt",
        urls=("https://github.com/isl-org/MiDaS/releases/download/v3/dpt_large_384.pt",),
        size=1376378527,
        sha256="2f21e586477d90cb9624c7eef5df7891edca49a1c4795ee2cb631fd4daa6ca69",
        sha256_prefix="2f21e586",
        licence="MIT",
        licence_note=_MIT_MIDAS,
        networks=("dpt_large_384",),
    ),
    WeightFile(
        name="depth_anything_v2_small",
        title="Depth Anything V2 Small",
        filename="depth_anything_v2_vits.pth",
        # Revision pinned (Hugging Face commit); the SHA-256 below matches the file at it.
        urls=(
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/"
            "03876f8651c73a60fe4c2c48294e09fcb6838fcf/depth_anything_v2_vits.pth",
        ),
        size=99218434,
        sha256="715fade13be8f229f8a70cc02066f656f2423a59effd0579197bbf57860e1378",
        licence="Apache-2.0",
        licence_note="Apache License 2.0 (https://huggingface.co/depth-anything/Depth-Anything-V2-Small).",
        networks=("depth_anything_v2_small",),
    ),
    WeightFile(
        name="depth_anything_v2_base",
        title="Depth Anything V2 Base",
        filename="depth_anything_v2_vitb.pth",
        # No pinned revision known; the SHA-256 check rejects any other file served at "main".
        urls=(
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Base/resolve/main/"
            "depth_anything_v2_vitb.pth",
        ),
        size=389961218,
        sha256="0d2b7002e62d39d655571c371333340bd88f67ab95050c03591555aa05645328",
        licence="CC-BY-NC-4.0",
        licence_note="Depth Anything V2 Base weights: " + _CC_BY_NC,
        networks=("depth_anything_v2_base",),
        requires_acceptance=True,
    ),
    WeightFile(
        name="depth_anything_v2_large",
        title="Depth Anything V2 Large",
        filename="depth_anything_v2_vitl.pth",
        # No pinned revision known; the SHA-256 check rejects any other file served at "main".
        urls=(
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Large/resolve/main/"
            "depth_anything_v2_vitl.pth",
        ),
        size=1341395338,
        sha256="a7ea19fa0ed99244e67b624c72b8580b7e9553043245905be58796a608eb9345",
        licence="CC-BY-NC-4.0",
        licence_note="Depth Anything V2 Large weights: " + _CC_BY_NC,
        networks=("depth_anything_v2_large",),
        requires_acceptance=True,
    ),
)

REGISTRY: Mapping[str, WeightFile] = types.MappingProxyType({w.name: w for w in _ENTRIES})
"""Every known weight file by registry name, in display order (read-only)."""


# ------------------------------------------------------------------------------------------- errors
class UnknownWeightsError(KeyError):
    """A name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_studio_cache: dict = {}


def studio_entries() -> dict[str, WeightFile]:
    """Entries from the JSON file named by ``BOOST_DEPTH_REGISTRY`` (none when unset).

    For studios that host their own files (a fine-tuned merge network, a mirror with other names):
    ``{"weights": [{"name": ..., "filename": ..., "urls": [...], "sha256": ..., "size": ..., "licence": ...,
    "networks": [...]}, ...]}``. An entry with an official name replaces it. Read again when the file changes.
    """
    path = os.environ.get(ENV_REGISTRY)
    if not path:
        return {}
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as error:
        raise UnknownWeightsError(f"{ENV_REGISTRY}={path}: cannot read it ({error.strerror}); fix or unset it") from None
    key = (path, mtime)
    if key not in _studio_cache:
        try:
            rows = json.loads(Path(path).read_text(encoding="utf-8"))["weights"]
            entries = {}
            for row in rows:
                entry = WeightFile(
                    name=row["name"], filename=row["filename"], urls=tuple(row.get("urls", ())),
                    size=row.get("size"), sha256=row.get("sha256"), sha256_prefix=row.get("sha256_prefix"),
                    licence=row.get("licence", "see your studio"), licence_note=row.get("licence_note", ""),
                    manual=bool(row.get("manual", False)), manual_instructions=row.get("manual_instructions", ""),
                    networks=tuple(row.get("networks", ())), requires_acceptance=bool(row.get("requires_acceptance")),
                    title=row.get("title", row["name"]))
                entries[entry.name] = entry
        except (ValueError, KeyError, TypeError) as error:
            raise UnknownWeightsError(
                f"{ENV_REGISTRY}={path} is not a weights registry file ({error!r}); expected "
                '{"weights": [{"name": ..., "filename": ..., "urls": [...], "sha256": ...}]}') from None
        _studio_cache.clear()
        _studio_cache[key] = entries
    return _studio_cache[key]


def registry() -> Mapping[str, WeightFile]:
    """The official registry with the studio's entries (``BOOST_DEPTH_REGISTRY``) added or replacing."""
    extra = studio_entries()
    return {**REGISTRY, **extra} if extra else REGISTRY


def names() -> tuple[str, ...]:
    """Registry names in display order."""
    return tuple(registry())


def get(name: str | WeightFile) -> WeightFile:
    """The :class:`WeightFile` called ``name`` (a WeightFile is returned as it is)."""
    if isinstance(name, WeightFile):
        return name
    entries = registry()
    try:
        return entries[name]
    except KeyError:
        raise UnknownWeightsError(
            f"unknown model weights {name!r}; known names: {', '.join(entries)}"
        ) from None


__all__ = ["ENV_REGISTRY", "REGISTRY", "WeightFile", "UnknownWeightsError", "get", "names", "registry", "studio_entries"]
