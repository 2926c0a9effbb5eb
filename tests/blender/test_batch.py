"""scripts/batch_depth.py as a pipeline runs it: with the bpy wheel (``python scripts/batch_depth.py -- ...``)
and with a plain Python; folders, frame patterns, --blend, per-image lines, summary and exit codes."""

import re
import shutil
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")

from conftest import DATA, ROOT  # noqa: E402

SCRIPT = ROOT / "scripts" / "batch_depth.py"


def run(python, *args, timeout=600):
    out = subprocess.run(
        [python, str(SCRIPT), "--", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    print(out.stdout, out.stderr[-3000:])
    return out


@pytest.fixture
def shots(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for frame in (1, 2):
        shutil.copyfile(DATA / "photo_96x64.png", folder / f"shot_{frame:04d}.png")
    (folder / "shot_0003.png").write_bytes(b"a broken png")  # the engine cannot read it
    return folder


def test_frames_with_blend_report_each_image_and_fail_on_any(
    shots, tmp_path, engine_python, synthetic_weights
):
    blend = tmp_path / "out" / "shots.blend"
    out = run(
        sys.executable,
        shots / "shot_####.png",
        "--frames",
        "2-4",
        "--net",
        "midas_v2",
        "--mode",
        "r0",
        "--base-weights",
        synthetic_weights["midas_v2"],
        "--merge-weights",
        synthetic_weights["merge_net"],
        "--output",
        tmp_path / "out",
        "--format",
        "png16",
        "--python",
        engine_python,
        "--blend",
        blend,
        "--resolution",
        "33",
    )
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert any(line.startswith("shot_0004.png: FAILED: frame 4 is missing") for line in lines)
    assert any(line.startswith("[1/2] shot_0002.png: ok (R=") for line in lines)
    assert any(line.startswith("[2/2] shot_0003.png: FAILED:") for line in lines)
    assert any(line.startswith("done: 1 ok, 2 failed") for line in lines)
    assert (tmp_path / "out" / ".boost_depth_job" / "job.json").is_file()  # a frame pattern makes a job
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".boost_depth_job") == [
        "shot_0002.exr",
        "shot_0002.png",
        "shots.blend",
    ]

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    assert [s.name for s in bpy.data.scenes] == ["shot_0002"]
    scene = bpy.data.scenes["shot_0002"]
    mesh = bpy.data.objects["shot_0002.png mesh"]
    cam = bpy.data.objects["shot_0002.png camera"]
    assert mesh.name in scene.objects and cam.name in scene.objects and scene.camera == cam
    assert mesh["boost_depth"]["rows"] == 22 and mesh["boost_depth"]["cols"] == 33
    assert cam.data.dof.use_dof and cam.data.dof.focus_distance > 0
    assert (scene.render.resolution_x, scene.render.resolution_y) == (96, 64)
    depth = bpy.data.images["shot_0002.png depth"]
    assert depth["depth_kind"] == "inverse_depth" and depth.is_float


def test_plain_python_without_blend_exits_zero(tmp_path, engine_python, synthetic_weights):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(DATA / "photo_96x64.png", folder / "a.png")
    out = run(
        engine_python,
        folder,
        "--mode",
        "r0",
        "--base-weights",
        synthetic_weights["midas_v2"],
        "--merge-weights",
        synthetic_weights["merge_net"],
        "--output",
        tmp_path / "out",
        "--format",
        "npy",
    )
    assert out.returncode == 0
    assert "[1/1] a.png: ok" in out.stdout and "done: 1 ok, 0 failed" in out.stdout
    summary = r"^done: 1 ok, 0 failed, [\d.]+ s \(engine peak memory \d+\.\d GiB\)$"
    assert re.search(summary, out.stdout, re.MULTILINE), out.stdout
    assert (tmp_path / "out" / "a.npy").is_file()


def test_usage_errors_exit_2(tmp_path, engine_python):
    out = run(sys.executable, DATA / "photo_96x64.png", "--frames", "9-1", "--output", tmp_path)
    assert out.returncode == 2 and "runs backwards" in out.stdout
    out = run(engine_python, DATA / "photo_96x64.png", "--output", tmp_path, "--blend", tmp_path / "x.blend")
    assert out.returncode == 2 and "--blend needs Blender" in out.stdout
    out = run(sys.executable, "--output", tmp_path)
    assert out.returncode == 2


def test_nothing_to_do_fails_without_running_the_engine(tmp_path):
    out = run(
        sys.executable,
        tmp_path / "missing_####.png",
        "--frames",
        "1-3",
        "--output",
        tmp_path / "out",
        "--python",
        "/nonexistent/python",
    )
    assert out.returncode == 1
    assert out.stdout.count("FAILED: frame") == 3 and "no images to process" in out.stdout


def test_blend_never_over_an_input_or_a_folder(tmp_path):
    """Issue 19: --blend naming one of the input photos (or a folder) is refused before the engine runs."""
    photo = tmp_path / "shot.png"
    shutil.copyfile(DATA / "photo_96x64.png", photo)
    before = photo.read_bytes()
    common = ["--output", tmp_path / "out", "--python", "/nonexistent/python"]
    out = run(sys.executable, photo, *common, "--blend", photo)
    assert out.returncode == 2 and "one of the input images" in out.stdout, out.stdout
    assert photo.read_bytes() == before
    out = run(sys.executable, photo, *common, "--blend", tmp_path)
    assert out.returncode == 2 and "is a folder" in out.stdout, out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot.png"]


def test_a_movie_runs_as_a_job_and_resumes(tmp_path, engine_python, synthetic_weights):
    """Issue 22: a movie with --frames gives <stem>_<n:06d> files; the same command again redoes nothing."""
    movie = tmp_path / "clip.avi"
    make = (
        "import sys, cv2\n"
        "photo = cv2.imread(sys.argv[2])\n"
        "w = cv2.VideoWriter(sys.argv[1], cv2.VideoWriter_fourcc(*'MJPG'), 10, (photo.shape[1], photo.shape[0]))\n"
        "for i in range(4):\n"
        "    w.write(cv2.flip(photo, 1) if i % 2 else photo)\n"
        "w.release()\n"
    )
    subprocess.run([engine_python, "-c", make, str(movie), str(DATA / "photo_96x64.png")], check=True, timeout=120)
    args = [movie, "--frames", "2-3", "--mode", "single", "--base-weights", synthetic_weights["midas_v2"],
            "--output", tmp_path / "out", "--format", "npy"]
    out = run(engine_python, *args)
    assert out.returncode == 0
    assert "[1/2] clip.avi#2: ok" in out.stdout and "[2/2] clip.avi#3: ok" in out.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npy")) == ["clip_000002.npy", "clip_000003.npy"]
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.npy")}
    out = run(engine_python, *args)
    assert out.returncode == 0 and out.stdout.count("already done") == 2, out.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.npy")} == before
