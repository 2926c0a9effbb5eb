"""Batch depth for pipelines: estimate boosted depth for many photos, optionally saving a .blend that holds, per
photo, a scene with its mesh and depth-of-field camera.

Runs in Blender or with the bpy wheel, or with any Python when no .blend is asked for::

    blender -b --python scripts/batch_depth.py -- ARGS
    python scripts/batch_depth.py -- ARGS

ARGS are those of ``python -m boost_core`` (IMAGE ... --net --mode --base-weights --merge-weights --output
--max-res --format --device --models-dir --retries --start-over --temporal --ray --workers), where an IMAGE may
also be a folder (its images, sorted), a frame pattern such as ``shot_####.png`` (or ``shot_%04d.png``) or a
movie, with ``--frames 1-240`` (ranges and lists: 1-10,15; frame sources: ``boost_core.footage.frames``), plus
``--blend FILE`` and the mesh/camera options below. The engine runs as a child process (``--python``,
``BOOST_DEPTH_PYTHON`` or this interpreter) as a resumable job (its state in OUTPUT/.boost_depth_job): running
the same command again skips the images already done. Prints one line per image and a summary; exits 0 when
every image succeeded, 1 when any failed, 2 on bad arguments or setup, 130 when interrupted.
"""

import argparse
import importlib
import importlib.util
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the extension's root (holds boost_core/)
PACKAGE = "boost_depth_batch"  # the extension's modules are imported under this name here
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def script_args(argv: list[str]) -> list[str]:
    """The arguments after ``--`` (Blender passes its own before it), else all of them."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv


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
    p.add_argument("--retries", type=int, default=2, help="retry a failed image up to N times (default 2)")
    p.add_argument("--start-over", action="store_true", help="forget the job's state in --output (settings too)")
    p.add_argument("--temporal", action="store_true", help="footage: align depth over time (less flicker)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster (ADDRESS or auto)")
    p.add_argument("--workers", type=int, help="with --ray: actors (default one per node)")
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


def engine_inputs(frames) -> tuple[list[str], list[str]]:
    """(engine inputs, labels in the engine's order): photo files as they are, each movie once (its frames come
    from --frames)."""
    inputs: list[str] = []
    for frame in frames:
        item = str(frame.path)
        if not frame.movie or item not in inputs:
            inputs.append(item)
    return inputs, [frame.label for frame in frames]


def run_engine(args, frames, formats: list[str]):
    """Run the engine on all frames in one child, as a job in --output; print a line per image. Returns the
    finished EngineJob and the skipped events (images already done)."""
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
    inputs, labels = engine_inputs(frames)
    engine_args = jobs.estimate_arguments(
        inputs,
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
    engine_args += ["--job", "--retries", str(args.retries)]
    if args.frames and any(frame.movie for frame in frames):
        engine_args += ["--frames", args.frames]
    for flag in ("overwrite", "start_over", "temporal"):
        if getattr(args, flag):
            engine_args.append("--" + flag.replace("_", "-"))
    if args.ray:
        engine_args += ["--ray", args.ray]
    if args.workers:
        engine_args += ["--workers", str(args.workers)]
    job = jobs.EngineJob(jobs.engine_command(python, engine_args), env=jobs.engine_environment(deps, cache_dir=cache))
    total = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    started: dict[str, float] = {}
    skipped: dict[str, dict] = {}

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
            elif e["event"] == "skipped":
                skipped[name] = e
                outs = ", ".join(str(v) for v in e.get("outputs", {}).values())
                say(f"[{i + 1}/{total}] {Path(name).name}: already done -> {outs}")
            elif e["event"] == "error":
                where = f"[{i + 1}/{total}] {Path(name).name}" if name else "engine"
                hint = f" ({e['hint']})" if e.get("hint") else ""
                attempt = f" (attempt {e['attempt']})" if e.get("attempt") else ""
                say(f"{where}: FAILED: {e.get('message')}{hint}{attempt}")

    job.start()
    try:
        job.wait(on_events=on_events)
    except KeyboardInterrupt:
        job.cancel()
        job.wait(timeout=30)
        raise
    return job, skipped


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
    sources = extension_module("boost_core.footage.frames")
    try:
        frames = sources.parse_frames(args.frames) if args.frames else None
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
    found, problems = sources.expand_sources(args.inputs, frames)
    images = [f.path for f in found]
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
    if not found:
        say(f"error: no images to process ({len(problems)} problem(s) above)")
        return EXIT_USAGE if not problems else EXIT_FAILED
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if args.blend and "exr" not in formats:
        formats.append("exr")  # the .blend's depth images are the float EXRs
    say(f"{len(found)} image(s), net {args.net}, mode {args.mode} -> {args.output}")
    try:
        job, skipped = run_engine(args, found, formats)
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
    results.update({name: e for name, e in skipped.items() if name not in results})
    # the .blend's scenes need a photo file: movie frames get depth files but no scene
    successes = [(f.path, results[f.label]) for f in found if f.label in results and not f.movie]
    failed = list(problems)
    reported = set()
    summary_event = next((e for e in job.events if e.get("event") == "job"), None)
    if summary_event is not None:  # the engine's final list: one entry per failed image, however many attempts
        for entry in summary_event.get("failed", []):
            reported.add(str(entry.get("image")))
            failed.append((Path(str(entry.get("image"))).name, str(entry.get("error"))))
    else:
        for e in job.errors:
            image = e.get("image")
            if str(image) in reported:
                continue
            reported.add(str(image))
            failed.append((Path(str(image)).name if image else "engine", str(e.get("message"))))
    if job.state == "failed" and not job.errors:
        say(f"engine: FAILED: {job.error_summary()}")
        failed.append(("engine", job.error_summary()))
    failed += [
        (Path(f.label).name, "not run: the engine stopped before it")
        for f in found
        if f.label not in results and f.label not in reported
    ]
    if args.blend and successes:
        failed += build_blend(args, successes, Path(args.blend).resolve())
    failed_names = {name for name, _ in failed}
    ok = sum(1 for f in found if f.label in results and Path(f.label).name not in failed_names)
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
