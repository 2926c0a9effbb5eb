"""Helpers of the footage tests (tests/test_footage_jobs.py, tests/test_footage_ray.py): real frame sequences,
the CLI as a child process, and what a job's output folder holds."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

FRAME_SIZE = (64, 48)  # width, height of the test footage


def panned_frames(count: int, size=FRAME_SIZE) -> list[np.ndarray]:
    """``count`` uint8 BGR frames made by panning a crop (3 px a frame, wrapping) across scikit-image's *chelsea*
    photograph, each resized to ``size``: real picture content that moves like footage."""
    photo = skimage.data.chelsea()[..., ::-1]  # RGB -> BGR, 300 x 451
    h, w = photo.shape[:2]
    crop_w, crop_h = 192, 144
    frames = []
    for i in range(count):
        x = (3 * i) % (w - crop_w)
        y = 40 + (i // ((w - crop_w) // 3)) % (h - crop_h - 40)
        frames.append(cv2.resize(photo[y:y + crop_h, x:x + crop_w], size, interpolation=cv2.INTER_AREA))
    return frames


def write_sequence(folder: Path, count: int, prefix="shot_", start=1) -> Path:
    """PNG frames ``<prefix>0001.png`` ... in ``folder``; returns the ``####`` pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(panned_frames(count)):
        assert cv2.imwrite(str(folder / f"{prefix}{start + i:04d}.png"), frame)
    return folder / f"{prefix}####.png"


def weights_args(checkpoints, mode="single"):
    args = ["--base-weights", checkpoints("midas_v2")]
    if mode != "single":
        args += ["--merge-weights", checkpoints("merge_net")]
    return args


def cli(args, env, timeout=900, **kwargs):
    return subprocess.run([sys.executable, "-m", "boost_core", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]  # every stdout line must be JSON


def frame_states(output: Path) -> dict[str, dict]:
    """The job's per-frame state files, read directly: {name: state}."""
    folder = output / ".boost_depth_job" / "frames"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def leftovers(folder: Path) -> list[str]:
    """Temp files anywhere under ``folder`` (a part-written file must never survive)."""
    return sorted(str(p) for p in folder.rglob("*") if ".part" in p.name or p.name.endswith(".replaced"))


def file_identity(path: Path):
    """(inode, mtime_ns, bytes) of a file: changes when the file is rewritten, even with the same content."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_processes(marker: str) -> list[int]:
    """Pids of processes whose command line names ``marker`` (this fixture's private Ray temp folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@contextlib.contextmanager
def local_ray_cluster(env, cpus=2):
    """A Ray head on 127.0.0.1 with ``cpus`` CPUs (``ray start --head --block`` in its own process group), stopped
    at the end (its group, then anything left naming its private temp folder); yields its address."""
    temp = tempfile.mkdtemp(prefix="bdray", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    port = free_port()
    log = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus),
                             "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats",
                             "--temp-dir", temp], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (Path(temp) / "head.log").read_text()[-3000:]
            probe = subprocess.run([str(Path(sys.executable).parent / "ray"), "status", "--address", address],
                                   capture_output=True, text=True, env=env, timeout=60)
            if probe.returncode == 0 and f"/{float(cpus)} CPU" in probe.stdout:
                break
            assert time.monotonic() < deadline, probe.stdout + probe.stderr
            time.sleep(1)
        yield address
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the node's processes on SIGTERM
            head.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # any of its group left (its process group: this fixture's only)
        except ProcessLookupError:
            pass
        for pid in own_processes(temp):  # whatever the head left behind (raylet, workers)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
