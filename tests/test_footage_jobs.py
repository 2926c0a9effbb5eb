"""Issue 22 parts 1 and 4: resumable jobs over folders, frame patterns, --frames chunks and movies
(``boost_core.footage``), through the real CLI (``python -m boost_core`` as a child process), real files and real
signals.

Expected depth files come from plain one-shot runs of the same photos (the per-photo path, no job), written by the
tests from the frames they make; never from the job code under test.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from footage_helpers import (cli, events_of, file_identity, frame_states, leftovers, panned_frames, weights_args,
                             write_sequence)

from boost_core.footage import frames as sources

FORMATS = "npy,png16"
COUNT = 8


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """8 panned frames shot_0001.png ... shot_0008.png; returns the pattern."""
    return write_sequence(tmp_path_factory.mktemp("footage"), COUNT)


@pytest.fixture(scope="module")
def expected(footage, checkpoints, engine_env, tmp_path_factory):
    """{file name: bytes} of a plain one-shot run (the photos as plain files, no job) of every frame."""
    out = tmp_path_factory.mktemp("expected")
    photos = sorted(footage.parent.glob("shot_*.png"))
    proc = cli([*photos, "--mode", "single", *weights_args(checkpoints), "--output", out, "--format", FORMATS,
                "--device", "cpu"], engine_env)
    assert proc.returncode == 0, proc.stderr
    assert not (out / ".boost_depth_job").exists()  # plain photos: no job, as before issue 22
    return {p.name: p.read_bytes() for p in out.iterdir()}


def job_args(pattern, out, checkpoints, *extra):
    return [pattern, "--mode", "single", *weights_args(checkpoints), "--output", out, "--format", FORMATS,
            "--device", "cpu", "--progress", "json", *extra]


def outputs(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def done_identities(out: Path) -> dict:
    """{frame name: identities of its outputs} of every frame the job file records as done."""
    return {name: {key: file_identity(out / entry["path"]) for key, entry in state["outputs"].items()}
            for name, state in frame_states(out).items() if state["state"] == "done"}


# -- frame sources --------------------------------------------------------------------------------------------

def write_movie(path: Path, frames) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a movie, read in order with a fresh capture (the reference for the seeking reader)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_frame_sources_folders_patterns_ranges_and_movies(tmp_path):
    assert sources.parse_frames("1-3,7, 5-5") == [1, 2, 3, 5, 7]
    for bad, said in (("9-1", "runs backwards"), ("1-x", "cannot read")):
        with pytest.raises(ValueError, match=said):
            sources.parse_frames(bad)
    pattern = write_sequence(tmp_path / "shots", 3)
    (tmp_path / "shots" / "notes.txt").write_text("not a frame")
    found, problems = sources.expand_sources([str(pattern)], None)
    assert [(f.name, f.number) for f in found] == [("shot_0001", 1), ("shot_0002", 2), ("shot_0003", 3)]
    assert problems == []
    found, problems = sources.expand_sources([str(tmp_path / "shots" / "shot_%04d.png")], [2, 4])
    assert [f.name for f in found] == ["shot_0002"]
    assert problems == [("shot_0004.png", f"frame 4 is missing ({tmp_path / 'shots' / 'shot_0004.png'})")]
    found, _ = sources.expand_sources([str(tmp_path / "shots")], None)  # a folder: its images, sorted
    assert [f.path.name for f in found] == ["shot_0001.png", "shot_0002.png", "shot_0003.png"]

    movie = tmp_path / "clip.avi"
    write_movie(movie, panned_frames(5))
    reference = decoded_frames(movie)
    assert len(reference) == 5
    found, problems = sources.expand_sources([str(movie)], [2, 4, 6])
    assert [(f.name, f.number, f.label) for f in found] == [("clip_000002", 2, f"{movie}#2"),
                                                              ("clip_000004", 4, f"{movie}#4")]
    assert problems == [("clip_000006", "frame 6 is not in clip.avi (frames 1-5)")]
    assert len(sources.expand_sources([str(movie)], None)[0]) == 5
    for number in (3, 4, 1, 5):  # in order, then seeking back and forward
        rgb = sources.read_movie_frame(movie, number)
        assert rgb.dtype == np.float64 and rgb.shape == (48, 64, 3)
        np.testing.assert_array_equal(rgb, reference[number - 1][..., ::-1] / 255.0)
    with pytest.raises(sources.FrameReadError, match="frame 9 of movie"):
        sources.read_movie_frame(movie, 9)
    assert sources.needs_job([str(movie)]) and sources.needs_job([str(pattern)])
    assert not sources.needs_job([str(tmp_path / "shots" / "shot_0001.png")])


def test_a_movie_gives_numbered_depth_frames(tmp_path, checkpoints, engine_env):
    movie = tmp_path / "clip.avi"
    write_movie(movie, panned_frames(4))
    stills = tmp_path / "stills"
    stills.mkdir()
    for number, frame in enumerate(decoded_frames(movie), 1):  # the frames as decoded, saved losslessly
        cv2.imwrite(str(stills / f"clip_{number:06d}.png"), frame)
    plain = tmp_path / "plain"
    proc = cli([stills / "clip_000002.png", stills / "clip_000003.png", "--mode", "single",
                *weights_args(checkpoints), "--output", plain, "--format", FORMATS, "--device", "cpu"], engine_env)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    proc = cli(job_args(movie, out, checkpoints, "--frames", "2-3"), engine_env)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    results = [e for e in events if e["event"] == "result"]
    assert [(e["image"], e["frame"]) for e in results] == [(f"{movie}#2", 2), (f"{movie}#3", 3)]
    assert outputs(out) == outputs(plain)  # clip_000002.npy/.png, clip_000003.npy/.png, the same bytes
    assert set(frame_states(out)) == {"clip_000002", "clip_000003"}
    assert [e for e in events if e["event"] == "job"][0]["failed"] == []


# -- resuming -------------------------------------------------------------------------------------------------

def run_and_kill(args, env, rng) -> tuple[int, list[dict]]:
    """Start the CLI, send SIGTERM at a random moment (after 0-2 finished frames and a random pause), wait for it."""
    proc = subprocess.Popen([sys.executable, "-m", "boost_core", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    events: list[dict] = []
    results_before_kill = rng.randint(0, 2)
    pause = rng.uniform(0.0, 1.5)
    killer = None
    for line in proc.stdout:
        events.append(json.loads(line))
        seen = sum(1 for e in events if e["event"] == "result")
        first = events[-1]["event"] == "start" and results_before_kill == 0 and killer is None
        if killer is None and (first or (results_before_kill and seen >= results_before_kill)):
            killer = threading.Timer(pause, lambda: proc.poll() is None and proc.send_signal(signal.SIGTERM))
            killer.start()
    code = proc.wait(timeout=600)
    if killer is not None:
        killer.cancel()
    return code, events


def test_killed_at_random_moments_it_redoes_no_finished_frame_and_loses_none(footage, expected, checkpoints,
                                                                              engine_env, tmp_path):
    rng = random.Random(22)
    out = tmp_path / "out"
    args = job_args(footage, out, checkpoints)
    finished: dict = {}  # frame -> identities of its outputs when first seen done
    kills = 0
    for attempt in range(6):
        code, events = run_and_kill(args, engine_env, rng)
        assert code in (0, 130), code
        assert leftovers(out) == []  # no half-written file survives a kill
        redone = {e["name"] for e in events if e["event"] == "result"} & set(finished)
        assert redone == set(), f"finished frames redone: {redone}"
        now = done_identities(out)
        for name, identity in finished.items():
            assert now[name] == identity, f"{name} was rewritten"
        skipped = {e["name"] for e in events if e["event"] == "skipped"}
        assert skipped == set(finished)
        finished.update({k: v for k, v in now.items() if k not in finished})
        if code == 130:
            kills += 1
            assert events[-1] == {**events[-1], "event": "done", "cancelled": True}
        else:
            break
    assert kills >= 2, "the job was not interrupted often enough to test resuming"
    if code == 130:  # the last run was killed too: finish it
        proc = subprocess.run([sys.executable, "-m", "boost_core", *map(str, args)], env=engine_env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    assert outputs(out) == expected  # none lost, each the same bytes as a plain one-shot run
    assert sorted(frame_states(out)) == [f"shot_{i:04d}" for i in range(1, COUNT + 1)]

    # a damaged output and a frame caught between writing its files and recording them are redone, alone
    (out / "shot_0003.npy").write_bytes(b"damaged")
    state = frame_states(out)["shot_0005"]
    (out / ".boost_depth_job" / "frames" / "shot_0005.json").write_text(
        json.dumps({**state, "state": "writing"}))
    untouched = {n: file_identity(out / n) for n in expected if not n.startswith(("shot_0003", "shot_0005"))}
    proc = cli(args, engine_env)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert sorted(e["name"] for e in events if e["event"] == "result") == ["shot_0003", "shot_0005"]
    job = [e for e in events if e["event"] == "job"][0]
    assert (job["done"], job["skipped"], job["failed"]) == (2, COUNT - 2, [])
    assert outputs(out) == expected
    assert {n: file_identity(out / n) for n in untouched} == untouched


def test_two_chunks_at_once_make_one_job(footage, expected, checkpoints, engine_env, tmp_path):
    out = tmp_path / "out"
    chunks = [subprocess.Popen([sys.executable, "-m", "boost_core",
                                *map(str, job_args(footage, out, checkpoints, "--frames", frames))],
                               env=engine_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for frames in ("1-4", "5-8")]
    answers = [c.communicate(timeout=900) for c in chunks]
    assert [c.returncode for c in chunks] == [0, 0], [a[1][-2000:] for a in answers]
    done = [sorted(e["name"] for e in events_of(stdout) if e["event"] == "result") for stdout, _ in answers]
    assert done == [[f"shot_{i:04d}" for i in range(1, 5)], [f"shot_{i:04d}" for i in range(5, 9)]]
    states = frame_states(out)
    assert {s["state"] for s in states.values()} == {"done"} and len(states) == COUNT
    assert len({s["pid"] for s in states.values()}) == 2  # written by the two processes, one file each
    assert outputs(out) == expected
    job = json.loads((out / ".boost_depth_job" / "job.json").read_text())
    assert job["settings"]["mode"] == "single" and job["settings"]["formats"] == ["npy", "png16"]
    # the whole shot afterwards: one job, every frame already done and verified, nothing computed
    proc = cli(job_args(footage, out, checkpoints), engine_env)
    assert proc.returncode == 0, proc.stderr
    summary = [e for e in events_of(proc.stdout) if e["event"] == "job"][0]
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, COUNT, [])


def test_changed_settings_are_refused_and_start_over_keeps_other_files(footage, expected, checkpoints, engine_env,
                                                                      tmp_path):
    out = tmp_path / "out"
    proc = cli(job_args(footage, out, checkpoints, "--frames", "1-2"), engine_env)
    assert proc.returncode == 0, proc.stderr
    before = {p.name: file_identity(p) for p in out.iterdir() if p.is_file()}
    proc = cli([footage, "--mode", "r0", *weights_args(checkpoints, "r0"), "--output", out, "--format", "npy",
                "--frames", "1-2"], engine_env)
    assert proc.returncode == 2
    assert "--mode single -> r0" in proc.stderr and "--format npy,png16 -> npy" in proc.stderr
    assert "--start-over" in proc.stderr
    assert {p.name: file_identity(p) for p in out.iterdir() if p.is_file()} == before

    (out / "shot_0003.png").write_bytes(b"a user's file, not the job's")
    proc = cli([footage, "--mode", "single", *weights_args(checkpoints), "--output", out, "--format", "png16",
                "--frames", "1-3", "--start-over", "--progress", "json"], engine_env)
    assert proc.returncode == 1  # frame 3 would replace a file the job did not write
    events = events_of(proc.stdout)
    assert sorted(e["name"] for e in events if e["event"] == "result") == ["shot_0001", "shot_0002"]
    failed = [e for e in events if e["event"] == "job"][0]["failed"]
    assert [f["name"] for f in failed] == ["shot_0003"] and "--overwrite" in failed[0]["error"]
    assert (out / "shot_0003.png").read_bytes() == b"a user's file, not the job's"
    for name in ("shot_0001.png", "shot_0002.png"):  # redone (the started-over job's own files)
        assert (out / name).read_bytes() == expected[name] and file_identity(out / name) != before[name]
    for name in ("shot_0001.npy", "shot_0002.npy"):  # written by the old job, kept
        assert file_identity(out / name) == before[name]
    job = json.loads((out / ".boost_depth_job" / "job.json").read_text())
    assert job["settings"]["formats"] == ["png16"]
    assert "failed: " in proc.stderr and "shot_0003" in proc.stderr


def test_failures_are_retried_then_listed(footage, checkpoints, engine_env, tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"shot_{i:04d}.png").write_bytes((footage.parent / f"shot_{i:04d}.png").read_bytes())
    (folder / "shot_0003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "out"
    args = job_args(folder / "shot_####.png", out, checkpoints, "--retries", "1", "--frames", "1-4")
    proc = cli(args, engine_env)
    assert proc.returncode == 1
    events = events_of(proc.stdout)
    errors = [e for e in events if e["event"] == "error"]
    assert [(Path(e["image"]).name, e.get("attempt")) for e in errors] == [
        ("shot_0004.png", None), ("shot_0003.png", 1), ("shot_0003.png", 2)]
    failed = {f["name"]: f for f in [e for e in events if e["event"] == "job"][0]["failed"]}
    assert sorted(failed) == ["shot_0003", "shot_0004"] and failed["shot_0003"]["attempts"] == 2
    assert "frame 4 is missing" in failed["shot_0004"]["error"]
    assert frame_states(out)["shot_0003"]["state"] == "failed"
    assert "  failed: " in proc.stderr and "shot_0003.png" in proc.stderr
    # the photo is fixed: the next run does it and skips the others; attempts keep counting
    (folder / "shot_0003.png").write_bytes((footage.parent / "shot_0003.png").read_bytes())
    proc = cli([*args[:-2], "--frames", "1-3"], engine_env)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert [e["name"] for e in events if e["event"] == "result"] == ["shot_0003"]
    assert frame_states(out)["shot_0003"]["attempts"] == 3


def test_temporal_aligns_once_every_frame_is_done_and_resumes(footage, checkpoints, engine_env, tmp_path):
    """--temporal calls boost_core.footage.temporal.align_job once every frame is done; the flicker figure lands
    with the job; a second run finds everything done and rewrites nothing."""
    out = tmp_path / "out"
    args = job_args(footage, out, checkpoints, "--frames", "1-3", "--temporal")
    proc = cli(args, engine_env)
    assert proc.returncode == 0, proc.stderr
    flicker = json.loads((out / ".boost_depth_job" / "flicker.json").read_text())
    assert flicker["frames"] == 3 and [e for e in events_of(proc.stdout) if e["event"] == "flicker"]
    assert sorted(p.name for p in (out / ".boost_depth_job" / "raw").iterdir()) == [
        "shot_0001.npy", "shot_0002.npy", "shot_0003.npy"]
    kept = {p.name: file_identity(p) for p in out.iterdir() if p.is_file()}
    proc = cli(args, engine_env)  # all done and aligned: nothing recomputed, nothing rewritten
    assert proc.returncode == 0, proc.stderr
    assert [e["event"] for e in events_of(proc.stdout) if e["event"] in ("result", "skipped", "flicker")] == [
        "skipped"] * 3
    assert {p.name: file_identity(p) for p in out.iterdir() if p.is_file()} == kept


@pytest.mark.slow
def test_200_frames_unattended_with_kills(checkpoints, engine_env, tmp_path):
    """200 frames, SIGTERM at three random moments, restarted each time: every frame done once, none lost."""
    pattern = write_sequence(tmp_path / "shots", 200)
    out = tmp_path / "out"
    args = job_args(pattern, out, checkpoints, "--format", "npy")
    rng = random.Random(200)
    finished: dict = {}
    for _ in range(3):
        code, events = run_and_kill(args, engine_env, rng)
        assert code == 130 and leftovers(out) == []
        assert not ({e["name"] for e in events if e["event"] == "result"} & set(finished))
        now = done_identities(out)
        assert all(now[name] == identity for name, identity in finished.items())
        finished.update(now)
    proc = cli(args, engine_env, timeout=3600)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert not ({e["name"] for e in events if e["event"] == "result"} & set(finished))
    states = frame_states(out)
    assert len(states) == 200 and {s["state"] for s in states.values()} == {"done"}
    sample = sorted(rng.sample(range(1, 201), 5))
    plain = tmp_path / "plain"
    proc = cli([*(pattern.parent / f"shot_{i:04d}.png" for i in sample), "--mode", "single",
                *weights_args(checkpoints), "--output", plain, "--format", "npy", "--device", "cpu"], engine_env)
    assert proc.returncode == 0, proc.stderr
    for i in sample:
        assert (out / f"shot_{i:04d}.npy").read_bytes() == (plain / f"shot_{i:04d}.npy").read_bytes()


def test_ray_missing_is_named_with_its_fix(footage, engine_env, tmp_path):
    """--ray in a Python without Ray (hidden from the import system here): exit 2 naming the extra; no job made."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "from boost_core.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, str(footage), "--output", str(tmp_path / "out"),
                           "--ray", "auto"], env=engine_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--ray needs Ray" in proc.stderr and "requirements-ray.txt" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_job_is_the_same_from_another_mount_point(footage, checkpoints, engine_env, tmp_path):
    """Chunks on machines that mount the footage elsewhere (here: a symlinked folder, and a relative path) resume
    one job: frames done from one path are skipped from the other."""
    out = tmp_path / "out"
    proc = cli(job_args(footage, out, checkpoints, "--frames", "1"), engine_env)
    assert proc.returncode == 0, proc.stderr
    mount = tmp_path / "mnt"
    mount.symlink_to(footage.parent, target_is_directory=True)
    relative = os.path.relpath(mount / footage.name, tmp_path)
    proc = cli(job_args(relative, out, checkpoints, "--frames", "1"), engine_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)
    assert [e["event"] for e in events if e["event"] in ("result", "skipped")] == ["skipped"]
