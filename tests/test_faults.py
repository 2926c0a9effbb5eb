"""Issue 19, "Nothing lost, ever": bad inputs and faults against the real CLI (``python -m boost_core`` as a child).

Rows of the issue and their tests:
1. an output that is an input / two images with one output:
   test_an_output_naming_an_input_is_refused_up_front, test_two_images_with_one_output_are_refused_up_front
2. a failed write leaves nothing, replaced files come back: test_a_failed_write_undoes_the_image
3. modes follow the umask, an overwritten file keeps its mode:
   test_new_files_follow_the_umask_and_replaced_keep_their_mode
4. a cancel at any moment: exit 130, done event, no files, no cc1 left:
   test_a_signal_during_start_up, test_a_cancel_inside_a_string_exec_still_exits_130,
   test_a_signal_while_the_networks_load, test_a_signal_while_the_kernels_compile,
   test_a_signal_during_inference, test_a_cancel_between_two_renames_undoes_the_image
5. bad values refused before any work (exit 2, argparse-style): test_bad_values_are_refused_up_front
6. one clear line per failure, decoder text becomes warnings:
   test_unreadable_photos_get_one_clear_line, test_decoder_warnings_become_result_warnings,
   test_malicious_pickles_are_refused_and_never_run, test_a_file_listed_twice_is_processed_once,
   test_merge_says_when_it_stretches_a_map_of_another_aspect_ratio
The Blender side's rows are in tests/blender: test_side_outputs_are_all_or_nothing,
test_blend_never_over_an_input_or_a_folder.

Expectations are written here from the files the tests create (bytes, modes, names), never from the code under test.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

PHOTO_SIZE = (96, 64)  # width, height: r0 on this is quick, the networks' loading dominates


def cli(args, env, **kwargs):
    return subprocess.run([sys.executable, "-m", "boost_core", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600, **kwargs)


def weights_args(checkpoints):
    return ["--base-weights", checkpoints("midas_v2"), "--merge-weights", checkpoints("merge_net")]


def write_photo(path: Path, sample: str = "coffee") -> Path:
    rgb = cv2.resize(getattr(skimage.data, sample)(), PHOTO_SIZE, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(path.suffix, rgb[..., ::-1])
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width=100_000, height=100_000) -> bytes:
    """A valid PNG header declaring 10^10 pixels (a decompression bomb), with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + png_chunk(b"IEND", b""))


def corrupt_jpeg(path: Path) -> Path:
    """A real JPEG with 3 stray bytes before its SOS marker: libjpeg decodes it and complains on stderr."""
    write_photo(path.with_suffix(".jpg"), "chelsea")
    data = path.with_suffix(".jpg").read_bytes()
    sos = data.index(b"\xff\xda")
    path.write_bytes(data[:sos] + b"\x00\x00\x00" + data[sos:])
    return path


def tree(folder: Path) -> dict:
    """{relative name: (bytes or 'dir', mode)} of everything under folder, hidden entries included."""
    if not folder.exists():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = ("dir" if p.is_dir() else p.read_bytes(), p.stat().st_mode & 0o7777)
    return out


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]  # every stdout line must be JSON


# ---------------------------------------------------------------------------------------------------------------
# One job of many bad inputs and faults (the networks load once): rows 2, 3 and 6 read its outcome.

@pytest.fixture(scope="module")
def mixed_job(checkpoints, engine_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    photos = root / "photos"
    photos.mkdir()
    write_photo(photos / "good.png")
    write_photo(photos / "victim.png", "chelsea")
    corrupt_jpeg(photos / "corrupt.jpg")
    whole = (photos / "good.png").read_bytes()
    (photos / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (photos / "bomb.png").write_bytes(bomb_png())
    (photos / "album").mkdir()
    out = root / "out"
    out.mkdir()
    (out / "good.exr").write_bytes(b"old exr")  # replaced (--overwrite): must keep 0664
    os.chmod(out / "good.exr", 0o664)
    (out / "victim.png").write_bytes(b"keep me")  # replaced, then restored when victim.npy fails
    os.chmod(out / "victim.png", 0o644)
    (out / "victim.npy").mkdir()  # the npy name is taken by a folder: the write fails after png/exr renamed
    (out / "victim.npy" / "inside").write_bytes(b"x")
    before = tree(out)
    inputs = [photos / "good.png", photos / "corrupt.jpg", photos / "victim.png", photos / "truncated.png",
              photos / "bomb.png", photos / "album", f"{photos}/./good.png"]
    proc = cli([*inputs, "--mode", "r0", *weights_args(checkpoints), "--output", out, "--format",
                "png16,exr,npy,color", "--overwrite", "--progress", "json", "--device", "cpu"], engine_env,
               preexec_fn=lambda: os.umask(0o027))
    return {"proc": proc, "events": events_of(proc.stdout), "out": out, "photos": photos, "before": before}


def errors_for(job, name):
    return [e for e in job["events"] if e["event"] == "error" and Path(e["image"]).name == name]


def test_a_failed_write_undoes_the_image(mixed_job):
    """Row 2: victim.npy is a folder; png16/exr/color of victim were renamed into place first and are undone."""
    out, before = mixed_job["out"], mixed_job["before"]
    assert mixed_job["proc"].returncode == 1, mixed_job["proc"].stderr
    (error,) = errors_for(mixed_job, "victim.png")
    assert "victim.npy" in error["message"] and "folder" in error["message"]
    after = tree(out)
    assert after["victim.png"] == before["victim.png"]  # restored: same bytes, same mode
    assert after["victim.npy"] == before["victim.npy"] and after["victim.npy/inside"] == before["victim.npy/inside"]
    assert "victim.exr" not in after and "victim_color.png" not in after
    assert [name for name in after if name.startswith(".") or "/." in name] == []  # no temps, no backups


def test_new_files_follow_the_umask_and_replaced_keep_their_mode(mixed_job):
    """Row 3: the child runs with umask 027: new files 0640; good.exr (0664 before --overwrite) stays 0664."""
    out = mixed_job["out"]
    for name in ("good.png", "good.npy", "good_color.png", "corrupt.png", "corrupt.npy"):
        assert (out / name).stat().st_mode & 0o7777 == 0o640, name
    assert (out / "good.exr").stat().st_mode & 0o7777 == 0o664
    assert (out / "good.exr").read_bytes() != b"old exr"


def test_unreadable_photos_get_one_clear_line(mixed_job):
    """Row 6: a truncated PNG, a decompression-bomb header and a folder: one line each, naming file and problem."""
    proc = mixed_job["proc"]
    expected = {"truncated.png": "truncated", "bomb.png": "decompression bomb", "album": "folder"}
    for name, words in expected.items():
        (error,) = errors_for(mixed_job, name)
        assert words in error["message"] and name in error["message"], error
        assert "\n" not in error["message"] and "Assertion" not in error["message"]
    lines = proc.stderr.splitlines()
    assert "" not in lines  # no blank lines
    assert not [line for line in lines if "libpng" in line and ": error:" not in line]  # no stray decoder lines
    assert not [line for line in lines if "OpenCV(" in line or "Assertion failed" in line or "Traceback" in line]
    done = mixed_job["events"][-1]
    assert done["event"] == "done" and done["failed"] == 4 and done["ok"] == 2


def test_decoder_warnings_become_result_warnings(mixed_job):
    """Row 6: corrupt JPEG data decodes; libjpeg's complaint is in the result's warnings, not on stderr."""
    (result,) = [e for e in mixed_job["events"] if e["event"] == "result" and e["image"].endswith("corrupt.jpg")]
    assert any("Corrupt JPEG data" in w for w in result["warnings"]), result["warnings"]
    assert "Corrupt JPEG data" not in mixed_job["proc"].stderr


def test_a_file_listed_twice_is_processed_once(mixed_job):
    """Row 6: photos/good.png and photos/./good.png are one file: processed once, a note says so, no failure."""
    results = [e for e in mixed_job["events"] if e["event"] == "result" and Path(e["image"]).name == "good.png"]
    assert len(results) == 1
    assert not errors_for(mixed_job, "good.png")
    assert "listed more than once" in mixed_job["proc"].stderr


# ---------------------------------------------------------------------------------------------------------------
# Row 1: output names planned before any work.

def test_an_output_naming_an_input_is_refused_up_front(checkpoints, engine_env, tmp_path):
    a = write_photo(tmp_path / "a.png")
    other = write_photo(tmp_path / "a_color.png", "chelsea")
    before = tree(tmp_path)
    proc = cli([a, other, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path, "--format", "color",
                "--overwrite", "--device", "cpu"], engine_env)
    assert proc.returncode == 2, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "a_color.png" in error_lines[0] and "input" in error_lines[0]
    assert tree(tmp_path) == before  # nothing written, nothing replaced


def test_two_images_with_one_output_are_refused_up_front(checkpoints, engine_env, tmp_path):
    first = write_photo((tmp_path / "one").mkdir() or tmp_path / "one" / "shot.png")
    second = write_photo((tmp_path / "two").mkdir() or tmp_path / "two" / "shot.jpg", "chelsea")
    proc = cli([first, second, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path / "out",
                "--device", "cpu", "--progress", "json"], engine_env)
    assert proc.returncode == 2, proc.stderr
    assert "shot.png" in proc.stderr and "both" in proc.stderr
    assert proc.stdout == ""  # refused before the job started: no start / result events
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Row 5: argument values checked before any work.

@pytest.mark.parametrize("option,value", [
    ("--max-res", "0"), ("--max-res", "-5"), ("--max-res", "nan"), ("--max-res", "inf"),
    ("--batch", "0"), ("--batch", "-3"), ("--threads", "0"),
    ("--output", "FILE"), ("--output", "UNDER_FILE"), ("--output", "/proc/boost-depth-faults"),
])
def test_bad_values_are_refused_up_front(option, value, checkpoints, engine_env, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    (tmp_path / "file.txt").write_bytes(b"not a folder")
    value = {"FILE": tmp_path / "file.txt", "UNDER_FILE": tmp_path / "file.txt" / "sub"}.get(value, value)
    args = [photo, "--mode", "r0", *weights_args(checkpoints), "--device", "cpu", "--format", "npy"]
    if option != "--output":
        args += ["--output", tmp_path / "out"]
    start = time.monotonic()
    proc = cli([*args, option, value], engine_env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m boost_core: error:") and option in last, last  # argparse style, names it
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "p.png"]
    assert (tmp_path / "file.txt").read_bytes() == b"not a folder"
    assert time.monotonic() - start < 120  # no inference happened (a full run here takes longer)


# ---------------------------------------------------------------------------------------------------------------
# Row 6: malicious pickles given as weights are refused and never run.

def _marker_pickles(marker: Path) -> dict:
    import io

    import torch

    command = f"touch {marker}"

    class Payload:
        def __reduce__(self):
            return (os.system, (command,))

    buffer = io.BytesIO()
    torch.save({"weight": Payload()}, buffer)  # torch's zip format, a REDUCE of os.system inside
    text = command.encode()
    return {
        "zip_reduce": buffer.getvalue(),
        "global_reduce": b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(text)) + text + b"\x85R.",
        "inst": b"(S'" + text + b"'\nios\nsystem\n.",
    }


@pytest.mark.parametrize("kind", ["zip_reduce", "global_reduce", "inst"])
def test_malicious_pickles_are_refused_and_never_run(kind, checkpoints, engine_env, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(_marker_pickles(marker)[kind])
    photo = write_photo(tmp_path / "p.png")
    proc = cli([photo, "--mode", "r0", "--base-weights", evil, "--merge-weights", checkpoints("merge_net"),
                "--output", tmp_path / "out", "--device", "cpu"], engine_env)
    assert proc.returncode == 2, proc.stderr
    assert "refused: not a plain weights file (it would run code when loaded)" in proc.stderr
    assert "evil.pt" in proc.stderr
    assert "weights_only=False" not in proc.stderr and "weights_only` set to `False" not in proc.stderr
    assert "truncated" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Row 4: signals at any moment.

def _stat(pid: int):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1: text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return name, fields[0], int(fields[1])  # comm, state, ppid


def descendants(pid: int) -> dict[int, str]:
    """{pid: comm} of every live process below pid."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info and info[1] != "Z":
                parents[int(entry)] = (info[2], info[0])
    found, frontier = {}, {pid}
    while frontier:
        frontier = {child for child, (ppid, _) in parents.items() if ppid in frontier and child not in found}
        found.update({child: parents[child][1] for child in frontier})
    return found


def alive(pid: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] != "Z"


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "boost_core", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_cancelled(proc, stdout, stderr, out: Path):
    assert proc.returncode == 130, (proc.returncode, stderr)
    events = events_of(stdout)
    assert events and events[-1]["event"] == "done" and events[-1]["cancelled"] is True, stdout
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 2, stderr
    assert tree(out) == {}  # no files at all (the folder itself may not even exist)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up(signum, checkpoints, engine_env, tmp_path):
    """While Python imports the engine and torch (about a second in): exit 130 and a done event, no traceback."""
    photo = write_photo(tmp_path / "p.png")
    proc = start([photo, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path / "out", "--device", "cpu",
                  "--progress", "json"], engine_env)
    time.sleep(0.8)
    assert proc.poll() is None
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert_cancelled(proc, stdout, stderr, tmp_path / "out")


def test_a_cancel_inside_a_string_exec_still_exits_130(engine_env, tmp_path):
    """CPython under ``-m`` remembers a KeyboardInterrupt that ended a string ``exec`` (dataclasses and torch's
    import run code that way) even when it was caught, and then dies by SIGINT (-2) instead of exiting 130: seen
    once in CI with a SIGTERM during start-up. Here the command itself is cut short inside such an exec, every
    time: a ``sitecustomize`` on the child's path replaces the CLI's entry point (nothing in the engine knows)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import boost_core.cli.main as cli_main\n"
        "def cut_short(argv=None):\n"
        "    exec('raise KeyboardInterrupt', {})\n"
        "cli_main.main = cut_short\n")
    env = dict(engine_env, PYTHONPATH=os.pathsep.join([str(hook), engine_env["PYTHONPATH"]]))
    result = cli(["photo.png", "--progress", "json"], env)
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert events_of(result.stdout)[-1] == {"event": "done", "ok": 0, "failed": 0, "cancelled": True}
    assert result.stderr.strip() == "cancelled"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_kernels_compile(signum, checkpoints, engine_env, tmp_path):
    """A fresh kernel cache: the C compiler runs (a cc1 grandchild); the signal kills it too and leaves no library."""
    cache = tmp_path / "cache"
    env = {**engine_env, "BOOST_DEPTH_CACHE": str(cache)}
    photo = write_photo(tmp_path / "p.png")
    proc = start([photo, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path / "out", "--device", "cpu",
                  "--progress", "json"], env)
    compiler = {}
    deadline = time.monotonic() + 300
    while not compiler and time.monotonic() < deadline and proc.poll() is None:
        compiler = {pid: name for pid, name in descendants(proc.pid).items() if name == "cc1"}
        time.sleep(0.005)
    assert compiler, "the C compiler never ran (is cc installed?)"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    left = [pid for pid in compiler if alive(pid)]
    assert left == [], f"compiler processes left running: {left}"
    assert_cancelled(proc, stdout, stderr, tmp_path / "out")
    left_files = [p.name for p in cache.iterdir() if "winograd" in p.name] if cache.exists() else []
    assert left_files == []  # no library, no .part


def open_files(pid: int) -> set[str]:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    found = set()
    for name in names:
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            pass
    return found


def test_a_signal_while_the_networks_load(checkpoints, engine_env, tmp_path):
    """SIGTERM while torch.load reads the base network's checkpoint (seen as an open file of the process)."""
    photo = write_photo(tmp_path / "p.png")
    weights = str(checkpoints("midas_v2"))
    proc = start([photo, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path / "out", "--device", "cpu",
                  "--progress", "json"], engine_env)
    deadline = time.monotonic() + 300
    while weights not in open_files(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    assert weights in open_files(proc.pid), "never saw the checkpoint being read"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert_cancelled(proc, stdout, stderr, tmp_path / "out")


def test_a_signal_during_inference(checkpoints, engine_env, tmp_path):
    photo = write_photo(tmp_path / "p.png")
    proc = start([photo, "--mode", "r0", *weights_args(checkpoints), "--output", tmp_path / "out", "--device", "cpu",
                  "--progress", "json", "--format", "png16,exr,npy"], engine_env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"whole_image"' in line:
            break
    assert lines and '"whole_image"' in lines[-1], (lines, proc.stderr.read() if proc.poll() is not None else "")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert_cancelled(proc, "".join(lines) + stdout, stderr, tmp_path / "out")


def test_merge_says_when_it_stretches_a_map_of_another_aspect_ratio(checkpoints, engine_env, tmp_path):
    """Row 6: merge resizes the high map to the low one's shape; a 2:1 high map for a 4:3 low map is reported."""
    yy, xx = np.mgrid[0:48, 0:64]
    np.save(tmp_path / "low.npy", (xx / 64 + yy / 96).astype(np.float32))  # 64x48: 4:3
    yy, xx = np.mgrid[0:100, 0:200]
    np.save(tmp_path / "high.npy", (xx / 200 + yy / 300).astype(np.float32))  # 200x100: 2:1
    proc = cli(["merge", "--low", tmp_path / "low.npy", "--high", tmp_path / "high.npy", "--output",
                tmp_path / "merged.npy", "--merge-weights", checkpoints("merge_net"), "--device", "cpu", "--json"],
               engine_env)
    assert proc.returncode == 0, proc.stderr
    (result,) = [e for e in events_of(proc.stdout) if e["event"] == "result"]
    assert any("high.npy" in w and "200x100" in w and "stretched" in w for w in result.get("warnings", [])), result
    assert np.load(tmp_path / "merged.npy").shape == (48, 64)


def test_a_cancel_between_two_renames_undoes_the_image(tmp_path, monkeypatch):
    """Row 4 (writing): SIGTERM arrives as KeyboardInterrupt between the renames of one image's formats; the first
    rename is undone (the replaced file comes back, bytes and mode) and no temp or backup is left."""
    from boost_core import image_io

    (tmp_path / "a.png").write_bytes(b"old png")
    os.chmod(tmp_path / "a.png", 0o604)
    before = tree(tmp_path)
    real_replace, renames = os.replace, []

    def interrupted_replace(src, dst, *args, **kwargs):
        if ".part" in os.path.basename(src):
            renames.append(dst)
            if len(renames) == 2:
                raise KeyboardInterrupt
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    depth = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    with pytest.raises(KeyboardInterrupt):
        image_io.write_depth_files(depth, image_io.output_paths("a", tmp_path, ["png16", "exr", "npy"]))
    assert len(renames) == 2
    assert tree(tmp_path) == before
