"""Batch depth for pipelines: estimate boosted depth for many photos, optionally saving a .blend that holds, per
photo, a scene with its mesh and depth-of-field camera.

Runs in Blender or with the bpy wheel, or with any Python when no .blend is asked for::

    blender -b --python scripts/batch_depth.py -- ARGS
    python scripts/batch_depth.py -- ARGS

ARGS are those of ``python -m boost_core`` (IMAGE ... --net --mode --base-weights --merge-weights --output
--max-res --format --device --models-dir), where an IMAGE may also be a folder (its images, sorted) or a frame
pattern such as ``shot_####.png`` (or ``shot_%04d.png``) with ``--frames 1-240`` (ranges and lists: 1-10,15),
plus ``--blend FILE`` and the mesh/camera options below. The engine runs as a child process
(``--python``, ``BOOST_DEPTH_PYTHON`` or this interpreter). Prints one line per image and a summary; exits 0
when every image succeeded, 1 when any failed, 2 on bad arguments or setup, 130 when interrupted.
"""

import argparse
import importlib
import importlib.util
import math
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the extension's root (holds boost_core/)
PACKAGE = "boost_depth_batch"  # the extension's modules are imported under this name here
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr", ".hdr"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def script_args(argv: list[str]) -> list[str]:
    """The arguments after ``--`` (Blender passes its own before it), else all of them."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv


def parse_frames(text: str) -> list[int]:
    """'1-240' / '1-10,15,20-22' -> sorted unique frame numbers. ValueError with the fix on bad input."""
    frames: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if not m:
            raise ValueError(f"--frames: cannot read {part!r}; write ranges and lists like 1-240 or 1-10,15")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"--frames: range {part!r} runs backwards; write {hi}-{lo}")
        frames.update(range(lo, hi + 1))
    return sorted(frames)


_HASHES = re.compile(r"#+")
_PRINTF = re.compile(r"%0?(\d*)d")


def is_pattern(text: str) -> bool:
    return bool(_HASHES.search(Path(text).name) or _PRINTF.search(Path(text).name))


def frame_path(pattern: str, frame: int) -> Path:
    name = Path(pattern).name
    m = _HASHES.search(name)
    if m:
        name = name[: m.start()] + f"{frame:0{len(m.group())}d}" + name[m.end() :]
    else:
        m = _PRINTF.search(name)
        width = int(m.group(1) or 0)
        name = name[: m.start()] + f"{frame:0{width}d}" + name[m.end() :]
    return Path(pattern).with_name(name)


def pattern_regex(pattern: str) -> re.Pattern:
    name = Path(pattern).name
    m = _HASHES.search(name) or _PRINTF.search(name)
    return re.compile(re.escape(name[: m.start()]) + r"(\d+)" + re.escape(name[m.end() :]) + "$")


def expand_inputs(items: list[str], frames: list[int] | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """(images to run, [(name, why)] failures found before running): folders give their images, patterns give
    their frames (--frames, or every matching file), plain paths must exist."""
    images: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                problems.append((item, "folder holds no images"))
            images += found
        elif is_pattern(item):
            if frames:
                for frame in frames:
                    p = frame_path(item, frame)
                    if p.is_file():
                        images.append(p)
                    else:
                        problems.append((p.name, f"frame {frame} is missing ({p})"))
            else:
                rx = pattern_regex(item)
                folder = path.parent
                found = sorted(
                    (int(m.group(1)), p)
                    for p in (folder.iterdir() if folder.is_dir() else [])
                    if (m := rx.match(p.name))
                )
                if not found:
                    problems.append((item, "no file matches this frame pattern"))
                images += [p for _, p in found]
        elif path.is_file():
            images.append(path)
        else:
            problems.append((item, "file not found"))
    unique: list[Path] = []
    seen = set()
    for p in images:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="batch_depth.py",
        description=__doc__.split("\n\n")[0],
        epilog="Example: blender -b --python scripts/batch_depth.py -- shots/shot_####.png --frames 1-240 "
        "--net midas_v2 --mode r20 --output depth/ --blend shots.blend",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE", help="photos, folders or frame patterns (shot_####.png)"
    )
    p.add_argument("--frames", help="frames for patterns: 1-240 or 1-10,15")
    p.add_argument("--net", default="midas_v2")
    p.add_argument("--mode", default="final")
    p.add_argument("--base-weights")
    p.add_argument("--merge-weights")
    p.add_argument("--models-dir")
    p.add_argument("--output", "-o", required=True, help="folder for the depth files")
    p.add_argument("--max-res", type=int)
    p.add_argument("--format", default="png16", help="comma-separated: png16,exr,npy,color")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--overwrite", action="store_true", help="replace existing depth files in --output")
    p.add_argument(
        "--python", help="interpreter running the engine (default: BOOST_DEPTH_PYTHON or this one)"
    )
    p.add_argument("--deps", help="folders with the engine's packages (os.pathsep-separated), put on its PYTHONPATH "
                   "(default in a Blender with Boost Depth enabled: the extension's wheels and PyTorch)")
    p.add_argument("--blend", help="save a .blend with a scene (mesh + DOF camera) per image")
    g = p.add_argument_group("mesh and camera (with --blend)")
    g.add_argument("--fov", type=float, default=55.0, help="field of view across the longer side, degrees")
    g.add_argument("--near", type=float, default=1.0)
    g.add_argument("--far", type=float, default=10.0)
    g.add_argument("--resolution", type=int, default=256, help="mesh vertices along the longer side")
    g.add_argument("--discontinuity", type=float, default=0.1, help="drop faces stretched more than this")
    g.add_argument("--focus", default="NEAREST", choices=("NEAREST", "CENTER"))
    g.add_argument("--fstop", type=float, default=2.8)
    g.add_argument("--pack", action="store_true", help="pack the depth images into the .blend")
    return p


def load_extension():
    """The extension's package (this repository / installed folder), imported as PACKAGE without
    registering."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    spec = importlib.util.spec_from_file_location(
        PACKAGE, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def extension_module(name: str):
    """A module of the extension, e.g. "boost_core.host.engine_process" or "scene.build"."""
    load_extension()
    return importlib.import_module(f"{PACKAGE}.{name}")


class EngineSetupError(Exception):
    """The engine cannot start as configured; the message names the fix."""


def installed_extension_engine() -> dict | None:
    """In a Blender where Boost Depth is enabled as an extension: the engine its preferences choose
    (``python``, PYTHONPATH ``paths``, ``models_dir``, kernel ``cache``), else None."""
    try:
        import bpy
    except ImportError:
        return None
    for name, addon in bpy.context.preferences.addons.items():
        request = sys.modules.get(f"{name}.engine_link.request")
        settings = sys.modules.get(f"{name}.engine_link.settings")
        if name.rpartition(".")[2] != "boost_depth" or request is None or settings is None:
            continue
        python, paths = request.engine_python(addon.preferences)
        cache = settings.user_folder("cache", create=True)
        request.forget_engine_modules()
        request.missing_engine_modules(addon.preferences, wait=120)
        return {"python": python, "paths": paths, "models_dir": settings.models_dir(addon.preferences),
                "cache": str(cache) if cache else None,
                "problem": request.engine_modules_problem(addon.preferences)}
    return None


def say(text: str) -> None:
    print(text, flush=True)


def run_engine(args, images: list[Path], formats: list[str]):
    """Run the engine on all images in one child; print a line per image. Returns the finished EngineJob."""
    jobs = extension_module("boost_core.host.engine_process")
    python = args.python or os.environ.get("BOOST_DEPTH_PYTHON")
    deps, cache = args.deps, None
    if python is None and deps is None:
        found = installed_extension_engine()
        if found is not None:  # Blender with Boost Depth enabled: its Python, wheels, PyTorch and models folder
            if found["problem"]:
                raise EngineSetupError(f"{found['problem']} (Preferences > Add-ons > Boost Depth), or pass "
                                       "--python PATH of a Python that has torch")
            python, deps, cache = found["python"], found["paths"], found["cache"]
            args.models_dir = args.models_dir or found["models_dir"]
    python = python or sys.executable
    engine_args = jobs.estimate_arguments(
        images,
        net=args.net,
        mode=args.mode,
        output=args.output,
        formats=formats,
        max_res=args.max_res,
        device=args.device,
        base_weights=args.base_weights,
        merge_weights=args.merge_weights,
        models_dir=args.models_dir,
    )
    if args.overwrite:
        engine_args.append("--overwrite")
    job = jobs.EngineJob(jobs.engine_command(python, engine_args), env=jobs.engine_environment(deps, cache_dir=cache))
    total = len(images)
    index = {str(p): i for i, p in enumerate(images)}
    started: dict[str, float] = {}

    def on_events(_job, events):
        for e in events:
            name = str(e.get("image") or "")
            i = index.get(name, 0)
            if e["event"] == "start":
                started[name] = time.monotonic()
            elif e["event"] == "result":
                took = time.monotonic() - started.get(name, time.monotonic())
                outs = ", ".join(str(v) for v in e.get("outputs", {}).values())
                say(f"[{i + 1}/{total}] {Path(name).name}: ok (R={e.get('R')}, {took:.1f} s) -> {outs}")
            elif e["event"] == "error":
                where = f"[{i + 1}/{total}] {Path(name).name}" if name else "engine"
                hint = f" ({e['hint']})" if e.get("hint") else ""
                say(f"{where}: FAILED: {e.get('message')}{hint}")

    job.start()
    try:
        job.wait(on_events=on_events)
    except KeyboardInterrupt:
        job.cancel()
        job.wait(timeout=30)
        raise
    return job


def build_blend(args, successes: list[tuple[Path, dict]], blend_path: Path) -> list[tuple[str, str]]:
    """One scene per image with its mesh and DOF camera; saves ``blend_path``. Returns failures."""
    import types

    import bpy

    build = extension_module("scene.build")
    images = extension_module("scene.images")
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    placeholder = bpy.context.scene
    failures = []
    fov = math.radians(args.fov)
    for photo_path, result in successes:
        try:
            photo = images.load_photo(photo_path)
            depth = images.load_depth_image(
                result["outputs"]["exr"],
                photo.name,
                result.get("kind") or "inverse_depth",
                {k: result.get(k) for k in ("net", "mode", "R")},
                pack=args.pack,
                expected_size=tuple(photo.size) if photo.size[0] and photo.size[1] else None,
            )
            scene = bpy.data.scenes.new(photo_path.stem)
            context = types.SimpleNamespace(scene=scene, collection=scene.collection)
            width, height = photo.size if photo.size[0] else depth.size
            camera = build.ensure_camera(context, photo.name, width, height, fov=fov)
            build.build_mesh(
                context,
                photo,
                depth,
                fov=fov,
                resolution=args.resolution,
                near=args.near,
                far=args.far,
                discontinuity=args.discontinuity,
                camera=camera,
            )
            m = build.mapping(depth, fov=fov, near=args.near, far=args.far)
            distance = build.focus_distance(build.metric_depth(depth, m), args.focus)
            build.set_dof(camera, distance, args.fstop)
            build.fit_clipping(camera, args.near, args.far)
            scene.render.engine = "CYCLES"
        except Exception as error:  # noqa: BLE001 - one bad image must not lose the others
            failures.append((photo_path.name, f"building its scene failed: {error}"))
            say(f"{photo_path.name}: FAILED to build its scene: {error}")
    if len(bpy.data.scenes) > 1:
        bpy.data.scenes.remove(placeholder)
        blend_path.parent.mkdir(parents=True, exist_ok=True)
        # a temp name of this process in the same folder, then one rename: the .blend is whole or absent (an old
        # one stays as it was when saving fails or is cancelled); the temp never survives
        tmp = blend_path.with_name(f".{blend_path.stem}.{os.getpid()}.part.blend")
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, relative_remap=False, copy=True)
            if not tmp.is_file():
                raise OSError(f"Blender did not save {tmp}")
            mode = (blend_path.stat().st_mode & 0o7777) if blend_path.is_file() else None
            if mode is not None:
                os.chmod(tmp, mode)  # an overwritten .blend keeps its mode
            os.replace(tmp, blend_path)
        except (Exception, KeyboardInterrupt) as error:
            for leftover in (tmp, tmp.with_name(tmp.name + "1")):  # Blender's own .blend1 backup of the temp
                if leftover.exists():
                    leftover.unlink()
            if isinstance(error, KeyboardInterrupt):
                raise
            failures.append((blend_path.name, f"saving the .blend failed: {error}"))
            say(f"{blend_path.name}: FAILED to save: {error}")
    return failures


def main(argv: list[str] | None = None) -> int:
    argv = script_args(list(sys.argv if argv is None else argv))
    if argv and argv[0].endswith("batch_depth.py"):
        argv = argv[1:]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    start = time.monotonic()
    try:
        frames = parse_frames(args.frames) if args.frames else None
    except ValueError as error:
        say(f"error: {error}")
        return EXIT_USAGE
    if args.blend:
        try:
            import bpy  # noqa: F401
        except ImportError:
            say(
                "error: --blend needs Blender: run with "
                "`blender -b --python scripts/batch_depth.py -- ...` or "
                "with a Python that has the bpy module"
            )
            return EXIT_USAGE
    images, problems = expand_inputs(args.inputs, frames)
    if args.blend:
        blend = Path(args.blend).resolve()
        if blend.is_dir():
            say(f"error: --blend {args.blend} is a folder; give a .blend file name")
            return EXIT_USAGE
        if any(blend == Path(p).resolve() for p in images):
            say(f"error: --blend {args.blend} is one of the input images; give another .blend file name")
            return EXIT_USAGE
    for name, why in problems:
        say(f"{name}: FAILED: {why}")
    if not images:
        say(f"error: no images to process ({len(problems)} problem(s) above)")
        return EXIT_USAGE if not problems else EXIT_FAILED
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if args.blend and "exr" not in formats:
        formats.append("exr")  # the .blend's depth images are the float EXRs
    say(f"{len(images)} image(s), net {args.net}, mode {args.mode} -> {args.output}")
    try:
        job = run_engine(args, images, formats)
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    except OSError as error:
        say(f"error: cannot start the engine: {error}")
        return EXIT_USAGE
    except EngineSetupError as error:
        say(f"error: {error}")
        return EXIT_USAGE
    results = {str(e.get("image")): e for e in job.results}
    successes = [(p, results[str(p)]) for p in images if str(p) in results]
    failed = list(problems)
    reported = set()
    for e in job.errors:
        image = e.get("image")
        reported.add(str(image))
        failed.append((Path(str(image)).name if image else "engine", str(e.get("message"))))
    if job.state == "failed" and not job.errors:
        say(f"engine: FAILED: {job.error_summary()}")
        failed.append(("engine", job.error_summary()))
    failed += [
        (p.name, "not run: the engine stopped before it")
        for p in images
        if str(p) not in results and str(p) not in reported
    ]
    if args.blend and successes:
        failed += build_blend(args, successes, Path(args.blend).resolve())
    failed_names = {name for name, _ in failed}
    ok = sum(1 for p, _ in successes if p.name not in failed_names)
    summary = f"done: {ok} ok, {len(failed)} failed, {time.monotonic() - start:.1f} s"
    memory = extension_module("boost_core.host.peak_memory").describe(job.done or {})
    if memory:
        summary += f" (engine {memory})"
    if args.blend and successes:
        summary += f"; blend: {Path(args.blend).resolve()}"
    say(summary)
    for name, why in failed:
        say(f"  failed: {name}: {why}")
    return EXIT_OK if not failed else EXIT_FAILED


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.exit(code)
