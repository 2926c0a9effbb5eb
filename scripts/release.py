"""Build every platform's extension zip with Blender's own build command and print each zip's size and contents.

    python scripts/release.py                                  # Blender's tool from this Python's bpy module
    python scripts/release.py --blender /path/to/blender       # or `blender --command extension build`
    python scripts/release.py --offline linux-x64 --find-links /opt/wheels   # plus a zip that bundles CPU torch

Steps: ``scripts/fetch_wheels.py`` (every platform's wheels, verified against the lock; skipped with
``--skip-fetch``), then ``build --split-platforms`` into ``--output`` (default ``dist/``): one zip per platform of
the manifest, each with only that platform's wheels. ``--offline PLATFORM`` also builds
``boost_depth-<version>-<platform>-offline.zip``, which carries the lock's CPU torch wheel(s) for that platform
(those whose file is in ``--find-links`` or downloadable from the lock's address) so Blender installs torch with
the extension and nothing is downloaded later. Exit 0 when every zip was built.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from boost_core.host import wheel_lock  # noqa: E402
from boost_core.weights import download  # noqa: E402

# what never goes into a zip's source copy (the manifest's own exclusions apply on top)
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "build", "dist", "*.zip", ".pytest_cache")


def build_command(args, source: Path, output: Path) -> list[str]:
    """Blender's extension build, split per platform: the program's ``--command extension build`` or the same
    tool (``bl_pkg/cli/blender_ext.py``) from the bpy module of this Python."""
    tail = ["build", "--source-dir", str(source), "--output-dir", str(output), "--split-platforms"]
    if args.blender:
        return [args.blender, "--factory-startup", "--command", "extension", *tail]
    try:
        import bpy
    except ImportError:
        raise SystemExit("no Blender: pass --blender PATH, or run with a Python that has the bpy module") from None
    cli = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    return [sys.executable, str(cli), *tail]


def run_build(args, source: Path, output: Path) -> None:
    out = subprocess.run(build_command(args, source, output), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"Blender's build failed ({out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-3000:]}")


def describe(zip_path: Path) -> str:
    """One line: the zip, its size, its wheels."""
    with zipfile.ZipFile(zip_path) as zf:
        wheels = sorted(Path(n).name for n in zf.namelist() if n.startswith("wheels/") and n.endswith(".whl"))
        files = len(zf.namelist())
    names = ", ".join(re.sub(r"-(cp\d+|py3).*", r" [\1]", w) for w in wheels)
    return f"{zip_path.name}: {download.human_size(zip_path.stat().st_size)} ({files} files; wheels: {names})"


def offline_zip(args, lock: wheel_lock.Lock, platform: str, output: Path) -> Path:
    """The platform's zip with its CPU torch wheel(s) added to wheels/ and the manifest."""
    torch = [f for f in lock.torch if f.platform == platform and f.build == "cpu"]
    with tempfile.TemporaryDirectory(prefix="boost-depth-offline-") as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(ROOT, source, ignore=COPY_IGNORE)
        added = []
        for f in torch:
            dest = source / "wheels" / f.filename
            local = next((d / f.filename for d in args.find_links if (d / f.filename).is_file()), None)
            if local is not None:
                shutil.copyfile(local, dest)
            elif f.sha256:
                download.fetch([f.url], dest, size=f.size, sha256=f.sha256)
            else:
                print(f"  offline {platform}: {f.filename} skipped (no copy here and no hash in the lock)")
                continue
            if f.sha256 and download.sha256_file(dest).hexdigest() != f.sha256:
                raise SystemExit(f"{f.filename}: SHA-256 differs from the lock; refusing to bundle it")
            added.append(f"./wheels/{f.filename}")
        if not added:
            raise SystemExit(f"no torch wheel for {platform} could be bundled")
        manifest = source / "blender_manifest.toml"
        text = manifest.read_text(encoding="utf-8")
        text = re.sub(r"^platforms = \[.*?\]", f'platforms = ["{platform}"]', text, count=1, flags=re.M | re.S)
        text = text.replace("wheels = [\n", "wheels = [\n" + "".join(f'  "{a}",\n' for a in added), 1)
        manifest.write_text(text, encoding="utf-8")
        built = Path(tmp) / "out"
        built.mkdir()
        run_build(args, source, built)
        (zip_path,) = built.glob("*.zip")
        final = output / zip_path.name.replace(".zip", "-offline.zip")
        shutil.move(zip_path, final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/release.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--blender", help="a Blender program to build with (default: this Python's bpy module)")
    parser.add_argument("--output", type=Path, default=ROOT / "dist", help="folder for the zips (default dist/)")
    parser.add_argument("--skip-fetch", action="store_true", help="use wheels/ as it is (it is checked anyway)")
    parser.add_argument("--offline", action="append", default=[], metavar="PLATFORM",
                        help="also build a zip bundling that platform's CPU torch (repeatable)")
    parser.add_argument("--find-links", action="append", type=Path, default=[],
                        help="folders holding torch wheels to bundle (for --offline)")
    args = parser.parse_args(argv)
    lock = wheel_lock.load()
    bad = [p for p in args.offline if p not in lock.platforms]
    if bad:
        parser.error(f"--offline {', '.join(bad)}: not a platform of the lock ({', '.join(lock.platforms)})")
    fetch = [sys.executable, str(ROOT / "scripts" / "fetch_wheels.py")] + (["--check"] if args.skip_fetch else [])
    if subprocess.run(fetch).returncode != 0:
        print("the wheels are not what the lock says: run python scripts/fetch_wheels.py", file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="boost-depth-release-") as tmp:
        run_build(args, ROOT, Path(tmp))
        zips = []
        for z in sorted(Path(tmp).glob("*.zip")):
            final = args.output / z.name
            shutil.move(z, final)
            zips.append(final)
    zips += [offline_zip(args, lock, p, args.output) for p in args.offline]
    for z in zips:
        print(describe(z))
    return 0


if __name__ == "__main__":
    sys.exit(main())
