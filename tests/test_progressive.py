"""Progressive results (issue 21): intermediate depth maps and the job's clock, through the real CLI."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from boost_core import image_io as io
from boost_core.algorithm.progressive import JobClock, PartialPublisher, partial_path

SHAPE = (100, 150)  # R 384, one patch qualifies (as in test_pipeline_api)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rgb = cv2.resize(skimage.data.astronaut(), (SHAPE[1], SHAPE[0]), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path


def run_live(args, env, on_event=None, timeout=900):
    """Run the engine with --progress json, handing each event to ``on_event`` as it arrives."""
    proc = subprocess.Popen([sys.executable, "-m", "boost_core", *map(str, args), "--progress", "json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    for line in proc.stdout:
        event = json.loads(line)
        events.append(event)
        if on_event is not None:
            on_event(event)
    stderr = proc.stderr.read()
    assert proc.wait(timeout) == 0, stderr
    return events


@pytest.fixture(scope="module")
def jobs(photo, checkpoints, engine_env, tmp_path_factory):
    """The same Final job with partial publishing (every group: interval 0) and without; partial maps read at
    the time of their event."""
    common = [photo, "--net", "midas_v2", "--mode", "final", "--base-weights", checkpoints("midas_v2"),
              "--merge-weights", checkpoints("merge_net"), "--format", "exr,npy", "--device", "cpu",
              "--batch", "1"]
    seen = {}

    def read_partial(event):
        if event["event"] == "partial":
            seen[event["done"]] = io.read_depth(event["path"])

    with_dir = tmp_path_factory.mktemp("with")
    events = run_live([*common, "--output", with_dir, "--partial", "--partial-interval", "0"], engine_env,
                      read_partial)
    without_dir = tmp_path_factory.mktemp("without")
    plain = run_live([*common, "--output", without_dir], engine_env)
    return {"events": events, "maps": seen, "out": with_dir, "plain": plain, "plain_out": without_dir}


def test_partial_maps_arrive_in_order_from_the_whole_image_to_the_last_patch(jobs):
    events = jobs["events"]
    partial = [e for e in events if e["event"] == "partial"]
    result = next(e for e in events if e["event"] == "result")
    n = result["patches"]
    assert n >= 1 and result["boosted"]
    assert [e["done"] for e in partial] == list(range(0, n + 1))  # interval 0: one per merged group (batch 1)
    assert partial[0]["of"] is None and all(e["of"] == n for e in partial[1:])
    kinds = [e["event"] for e in events]
    # the whole-image map comes before the patch stage, the last before the result
    assert kinds.index("partial") < [e.get("stage") for e in events].index("patches")
    assert max(i for i, k in enumerate(kinds) if k == "partial") < kinds.index("result")
    assert all(e["path"] == str(partial_path(jobs["out"], "astronaut")) for e in partial)
    assert all(e["image"] == result["image"] for e in partial)


def test_each_partial_map_is_a_float_map_of_the_input_size(jobs):
    maps = jobs["maps"]
    assert sorted(maps) == list(range(len(maps)))
    for depth in maps.values():
        assert depth.shape == SHAPE and depth.dtype == np.float32 and np.isfinite(depth).all()
    final = np.load(jobs["out"] / "astronaut.npy")
    np.testing.assert_array_equal(maps[max(maps)], final)  # the last partial map is the result
    assert not np.array_equal(maps[0], final)  # the whole-image map, before the patch was merged


def test_the_result_is_identical_with_and_without_partial_publishing(jobs):
    np.testing.assert_array_equal(np.load(jobs["out"] / "astronaut.npy"), np.load(jobs["plain_out"] / "astronaut.npy"))
    assert not any(e["event"] == "partial" for e in jobs["plain"])
    assert not (jobs["plain_out"] / ".partial").exists()


def test_elapsed_increases_and_eta_appears_once_estimable(jobs):
    events = jobs["events"]
    timed = [e for e in events if e["event"] in ("stage", "progress", "partial")]
    assert all("elapsed_s" in e for e in timed)
    elapsed = [e["elapsed_s"] for e in timed]
    assert elapsed == sorted(elapsed) and elapsed[-1] > elapsed[0]
    first_merged = next(i for i, e in enumerate(timed) if e["event"] == "progress" and e.get("done", 0) > 0)
    assert not any("eta_s" in e for e in timed[:first_merged])  # no guess before a patch group was measured
    assert all(e["eta_s"] >= 0 for e in timed[first_merged:])
    # the whole-image stage reports its sub-steps (low pass, high pass, merge)
    steps = [e["step"] for e in events if e["event"] == "progress" and e.get("stage") == "whole_image"]
    assert steps == [1, 2, 3]
    group_steps = [e["step"] for e in events if e["event"] == "progress" and e.get("stage") == "patches"]
    assert group_steps == [1, 2, 3, 4] * events[-2]["patches"]


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_publishing_is_throttled_by_interval_and_budget(tmp_path):
    now = FakeTime()
    events = []
    clock = JobClock(events.append, now=now)
    publisher = PartialPublisher(tmp_path / "p.exr", clock, image="x.png", interval=5.0, budget=0.03)
    depth = np.zeros((4, 6), np.float32)
    calls = []

    def make():
        calls.append(1)
        now.t += 0.5  # each publish costs 0.5 s
        return depth

    assert publisher(make, 0, None, force=True)  # t 100 -> 100.5, spent 0.5
    now.t = 103.0
    assert not publisher(make, 1, 9)  # within the interval
    now.t = 110.0  # 10 s into the job: 0.5 + 0.5 > 3 % of 10 s
    assert not publisher(make, 2, 9)
    now.t = 140.0  # 40 s: 1.0 <= 1.2
    assert publisher(make, 3, 9)
    assert publisher(make, 9, 9, force=True)
    assert len(calls) == 3  # skipped maps are never computed
    assert [e["done"] for e in events] == [0, 3, 9]
    assert events[0] == {"event": "partial", "image": "x.png", "path": str(tmp_path / "p.exr"), "done": 0,
                         "of": None, "publish_s": 0.5, "elapsed_s": 0.5}
    np.testing.assert_array_equal(io.read_depth(tmp_path / "p.exr"), depth)
    assert [p.name for p in tmp_path.iterdir()] == ["p.exr"]  # no temp file left


def test_the_clock_estimates_from_the_measured_cost_per_patch():
    now = FakeTime()
    events = []
    clock = JobClock(events.append, now=now)
    clock({"event": "stage", "stage": "whole_image"})
    now.t += 10
    clock({"event": "progress", "done": 0, "of": 4, "fraction": 0.0})
    now.t += 6
    clock({"event": "progress", "stage": "patches", "step": 2, "steps": 4, "fraction": 0.25})
    now.t += 6
    clock({"event": "progress", "done": 2, "of": 4, "fraction": 0.5})  # 6 s per patch
    now.t += 3
    clock({"event": "progress", "stage": "patches", "step": 2, "steps": 4, "fraction": 0.75})
    assert [e.get("eta_s") for e in events] == [None, None, None, 12.0, 6.0]
    assert [e["elapsed_s"] for e in events] == [0.0, 10.0, 16.0, 22.0, 25.0]
