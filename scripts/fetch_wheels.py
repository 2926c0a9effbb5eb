"""Fill ``wheels/`` from ``dependencies.lock.json`` and keep ``blender_manifest.toml``'s ``wheels`` and
``platforms`` true to it.

    python scripts/fetch_wheels.py                        # every platform's wheels (what a release needs)
    python scripts/fetch_wheels.py --platform linux-x64   # only those (the manifest still lists all)
    python scripts/fetch_wheels.py --check                # verify wheels/ and the manifest, download nothing
    python scripts/fetch_wheels.py --update-lock --find-links /opt/wheels   # re-pin from PyPI's JSON API

Every file is downloaded (resumed after a dropped connection), checked against the lock's size and SHA-256 and
only then moved into ``wheels/``; wheels that the lock no longer names are removed. Exit 0 when ``wheels/``
holds what was asked for, 1 on a download or hash failure (nothing unverified is left), 2 on bad arguments.

What is bundled and why (``requirements`` in the lock): OpenCV (``opencv-python-headless``, one abi3 wheel per
platform that serves every Python and works with Blender's own numpy 1.26 and 2.x), OpenEXR (float depth files;
one wheel per platform and Python), typing_extensions (the one module torch imports beyond numpy). numpy is not
bundled: Blender ships it. torch is not bundled: the lock's ``torch`` entries are the builds the extension
downloads when the user asks (``boost_core.host.torch_install``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from boost_core.host import wheel_lock  # noqa: E402
from boost_core.weights import download  # noqa: E402

WHEELS = ROOT / "wheels"
MANIFEST = ROOT / "blender_manifest.toml"
PYPI = "https://pypi.org"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# ------------------------------------------------------------------------------------------- wheel tags
def wheel_tags(filename: str) -> tuple[str, str, list[str]]:
    """``(python tag, abi tag, [platform tags])`` of a wheel file name (PEP 427)."""
    parts = filename[:-4].split("-")
    return parts[-3], parts[-2], parts[-1].split(".")


def platform_rank(filename: str, platform: str) -> int | None:
    """How well a wheel fits a Blender platform: None = not at all, lower = better (the oldest glibc / macOS
    the wheel accepts, so the zip runs on the most machines)."""
    _, _, plats = wheel_tags(filename)
    best = None
    for tag in plats:
        rank = None
        if tag == "any":
            rank = 0
        elif platform == "linux-x64" and tag.startswith("manylinux") and tag.endswith("_x86_64"):
            m = re.search(r"manylinux_2_(\d+)_", tag)
            rank = int(m.group(1)) if m else {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}.get(
                tag.rsplit("_x86_64", 1)[0], 50)
        elif platform == "windows-x64" and tag == "win_amd64":
            rank = 1
        elif platform.startswith("macos-") and tag.startswith("macosx_"):
            arch = "arm64" if platform == "macos-arm64" else "x86_64"
            if tag.endswith("_" + arch):
                rank = int(tag.split("_")[1])
            elif tag.endswith("_universal2"):
                rank = 100 + int(tag.split("_")[1])
        if rank is not None and (best is None or rank < best):
            best = rank
    return best


def serves_python(filename: str, python: str) -> bool:
    """Whether a wheel installs on CPython ``python`` ("3.11"): its own cpXY tag, an abi3 wheel for an older
    3.x, or a pure py3 wheel."""
    py, abi, _ = wheel_tags(filename)
    want = int(python.split(".")[1])
    for tag in py.split("."):
        if tag in ("py3", "py2") and abi == "none":
            return True
        m = re.fullmatch(r"cp3(\d+)", tag)
        if m and abi == f"cp3{m.group(1)}" and int(m.group(1)) == want:
            return True
        if m and abi == "abi3" and int(m.group(1)) <= want:
            return True
    return False


def choose(files: list[dict], platform: str, python: str) -> dict | None:
    """The best PyPI file entry for a platform and Python, or None."""
    ranked = []
    for f in files:
        name = f["filename"]
        if f.get("packagetype") != "bdist_wheel" or f.get("yanked"):
            continue
        rank = platform_rank(name, platform)
        if rank is not None and serves_python(name, python):
            ranked.append((rank, name, f))
    return min(ranked)[2] if ranked else None


# ------------------------------------------------------------------------------------------- lock update
def pypi_release(name: str, version: str, pypi: str) -> list[dict]:
    with urllib.request.urlopen(f"{pypi}/pypi/{name}/json", timeout=60) as r:
        data = json.load(r)
    files = data["releases"].get(version)
    if not files:
        raise SystemExit(f"{name}=={version} is not on {pypi}; pin a released version in the lock's requirements")
    return files


def file_url(f: dict, pypi: str) -> str:
    """A PyPI file's address in its canonical form (https://files.pythonhosted.org/packages/aa/bb/<hash>/<file>),
    whatever form (absolute, or relative to the JSON API as some proxies answer) the API gave."""
    url = urllib.parse.urljoin(f"{pypi}/pypi/x/json", f["url"])
    m = re.search(r"/packages/((?:[0-9a-f]{2}/){2}[0-9a-f]{60}/[^/]+)$", url)
    return f"https://files.pythonhosted.org/packages/{m.group(1)}" if m else url


def locked(name, version, f, platform, pythons, pypi=PYPI, **extra) -> wheel_lock.LockedFile:
    return wheel_lock.LockedFile(name, version, f["filename"], file_url(f, pypi), platform, tuple(pythons),
                                 f["size"], f["digests"]["sha256"], **extra)


def update_lock(lock: wheel_lock.Lock, pypi: str, find_links: list[Path]) -> wheel_lock.Lock:
    """Re-resolve every pinned requirement and torch build into file names, addresses, sizes and hashes."""
    bundled: dict[str, wheel_lock.LockedFile] = {}
    for name, version in sorted(lock.requirements.items()):
        files = pypi_release(name, version, pypi)
        for platform in lock.platforms:
            for python in lock.pythons:
                f = choose(files, platform, python)
                if f is None:
                    raise SystemExit(f"{name}=={version} has no wheel for {platform} / Python {python}")
                plat = "any" if platform_rank(f["filename"], platform) == 0 else platform
                old = bundled.get(f["filename"])
                pythons = sorted(set(old.pythons if old else ()) | {python})
                bundled[f["filename"]] = locked(name, version, f, plat, pythons, pypi)
    torch: list[wheel_lock.LockedFile] = []
    files = pypi_release("torch", lock.torch_version, pypi)
    for platform in lock.platforms:
        for python in lock.pythons:
            if platform == "linux-x64":
                torch.append(pytorch_cpu_wheel(lock.torch_version, python, find_links))
                continue
            f = choose(files, platform, python)
            if f is None:
                raise SystemExit(f"torch {lock.torch_version} has no wheel for {platform} / Python {python}: "
                                 "remove the platform from the lock")
            torch.append(locked("torch", lock.torch_version, f, platform, [python], pypi, build="cpu",
                                note="PyPI's build: CPU" + (", and the GPU through MPS" if "macos" in platform else "")))
    return wheel_lock.Lock(lock.platforms, lock.pythons, lock.requirements, lock.torch_version,
                           tuple(bundled[k] for k in sorted(bundled)), tuple(torch))


def pytorch_cpu_wheel(version: str, python: str, find_links: list[Path]) -> wheel_lock.LockedFile:
    """Linux's CPU build lives on PyTorch's own index (PyPI's Linux wheel is the multi-GB CUDA build). Its
    size and hash come from a copy of the file in ``find_links`` when there is one; otherwise they are left
    open and the extension reads the hash from the index page when it downloads."""
    tag = f"cp{python.replace('.', '')}"
    filename = f"torch-{version}+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl"
    size = sha = None
    note = "size and hash read from the index page at download time"
    for folder in find_links:
        local = folder / filename
        if local.is_file():
            size, sha = local.stat().st_size, download.sha256_file(local).hexdigest()
            note = f"size and hash of the copy in {folder} (the index page's hash is checked as well at download)"
            break
    url = f"{PYTORCH_CPU_INDEX}/{filename.replace('+', '%2B')}"
    return wheel_lock.LockedFile("torch", version, filename, url, "linux-x64", (python,), size, sha,
                                 index=PYTORCH_CPU_INDEX, build="cpu", note=note)


# ------------------------------------------------------------------------------------------- manifest
def manifest_text(text: str, lock: wheel_lock.Lock) -> str:
    """The manifest with its ``platforms`` and ``wheels`` lists rewritten from the lock."""
    platforms = "platforms = [" + ", ".join(f'"{p}"' for p in lock.platforms) + "]"
    wheels = "wheels = [\n" + "".join(f'  "{w}",\n' for w in lock.wheel_paths()) + "]"
    for key, block in (("platforms", platforms), ("wheels", wheels)):
        pattern = re.compile(rf"^{key} = \[.*?\]", re.S | re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text, count=1)
        else:
            text = text.replace("\n[permissions]", f"\n{block}\n\n[permissions]", 1)
    return text


# ------------------------------------------------------------------------------------------- fetching
def fetch(lock: wheel_lock.Lock, platforms: list[str], *, mirror: str | None = None, quiet: bool = False,
          wheels: Path = WHEELS) -> int:
    """Download the bundled wheels of ``platforms`` into ``wheels`` (verified) and remove stale ones. Returns
    how many failed."""
    wheels.mkdir(exist_ok=True)
    wanted = {f.filename: f for f in lock.bundled if f.platform == "any" or f.platform in platforms}
    known = {f.filename for f in lock.bundled}
    for stale in wheels.glob("*.whl"):
        if stale.name not in known:
            stale.unlink()
            print(f"removed {stale.name} (not in the lock)")
    failed = 0
    for name, f in sorted(wanted.items()):
        dest = wheels / name
        if dest.is_file() and dest.stat().st_size == f.size and download.sha256_file(dest).hexdigest() == f.sha256:
            if not quiet:
                print(f"ok       {name}")
            continue
        urls = [f"{mirror.rstrip('/')}/{name}"] if mirror else [f.url]
        try:
            download.fetch(urls, dest, size=f.size, sha256=f.sha256)
        except download.DownloadError as e:
            print(f"FAILED   {name}: {e} ({e.hint})" if getattr(e, "hint", "") else f"FAILED   {name}: {e}",
                  file=sys.stderr)
            failed += 1
            continue
        print(f"fetched  {name} ({download.human_size(f.size)})")
    return failed


def check(lock: wheel_lock.Lock, platforms: list[str], wheels: Path = WHEELS, manifest: Path = MANIFEST) -> list[str]:
    """Problems with wheels/ and the manifest (empty: all true to the lock)."""
    problems = []
    if manifest_text(manifest.read_text(encoding="utf-8"), lock) != manifest.read_text(encoding="utf-8"):
        problems.append("blender_manifest.toml's wheels/platforms differ from the lock: run scripts/fetch_wheels.py")
    for f in lock.bundled:
        if f.platform != "any" and f.platform not in platforms:
            continue
        dest = wheels / f.filename
        if not dest.is_file():
            problems.append(f"wheels/{f.filename} is missing")
        elif dest.stat().st_size != f.size or download.sha256_file(dest).hexdigest() != f.sha256:
            problems.append(f"wheels/{f.filename} does not match the lock's size/SHA-256")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/fetch_wheels.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", dest="platforms", metavar="NAME",
                        help="a platform of the lock (repeatable; default: all of them)")
    parser.add_argument("--check", action="store_true", help="verify wheels/ and the manifest; download nothing")
    parser.add_argument("--update-lock", action="store_true", help="re-pin files and hashes from PyPI first")
    parser.add_argument("--pypi", default=PYPI, help="PyPI's address (for --update-lock)")
    parser.add_argument("--find-links", action="append", type=Path, default=[],
                        help="folder holding torch wheels that are not on PyPI (for --update-lock)")
    parser.add_argument("--mirror", help="fetch the wheels by file name from this address instead (a folder URL)")
    parser.add_argument("--lock", type=Path, default=wheel_lock.LOCK_FILE, help=argparse.SUPPRESS)
    parser.add_argument("--wheels-dir", type=Path, default=WHEELS, help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lock = wheel_lock.load(args.lock)
    platforms = args.platforms or list(lock.platforms)
    unknown = [p for p in platforms if p not in lock.platforms]
    if unknown:
        parser.error(f"unknown platform {', '.join(unknown)}; choose from {', '.join(lock.platforms)}")
    if args.update_lock:
        lock = update_lock(lock, args.pypi.rstrip("/"), args.find_links)
        wheel_lock.dump(lock, args.lock)
        print(f"lock written: {len(lock.bundled)} bundled wheels, {len(lock.torch)} torch builds")
    if args.check:
        problems = check(lock, platforms, args.wheels_dir, args.manifest)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    failed = fetch(lock, platforms, mirror=args.mirror, wheels=args.wheels_dir)
    text = args.manifest.read_text(encoding="utf-8")
    new = manifest_text(text, lock)
    if new != text:
        args.manifest.write_text(new, encoding="utf-8")
        print(f"{args.manifest.name}: wheels and platforms updated from the lock")
    chosen = [f for f in lock.bundled if f.platform == "any" or f.platform in platforms]
    print(f"wheels/: {len(chosen)} wheel(s) for {', '.join(platforms)}, "
          f"{download.human_size(sum(f.size or 0 for f in chosen))}" + (f"; {failed} FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
