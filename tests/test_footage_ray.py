"""Issue 22 part 3: the same job on a real local Ray cluster (started here on 127.0.0.1, two CPUs: two workers).

Ray is imported at the top on purpose: CI installs it (.ci/setup, requirements-ray.txt), so a CI without Ray fails
here instead of skipping. The expected files come from the same job run in one process (``--threads 1``, the CPUs
each actor asks for: torch's CPU results depend on the thread count).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray  # noqa: F401 - required: see the module docstring

from footage_helpers import (cli, events_of, frame_states, leftovers, local_ray_cluster, weights_args,
                             write_sequence)

FORMATS = "npy,png16"
COUNT = 6


@pytest.fixture(scope="module")
def cluster(engine_env):
    """A Ray head on 127.0.0.1 with 2 CPUs, stopped in teardown; yields its address."""
    with local_ray_cluster(engine_env, cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    return write_sequence(tmp_path_factory.mktemp("footage"), COUNT)


def job_args(pattern, out, checkpoints, *extra):
    return [pattern, "--mode", "single", *weights_args(checkpoints), "--output", out, "--format", FORMATS,
            "--device", "cpu", "--progress", "json", *extra]


@pytest.fixture(scope="module")
def one_process(footage, checkpoints, engine_env, tmp_path_factory):
    """{name: bytes} of the job run in one process with one thread."""
    out = tmp_path_factory.mktemp("one_process")
    proc = cli(job_args(footage, out, checkpoints, "--threads", "1"), engine_env)
    assert proc.returncode == 0, proc.stderr
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def outputs(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_two_workers_give_the_same_files_as_one_process(cluster, footage, one_process, checkpoints, engine_env,
                                                        tmp_path):
    out = tmp_path / "out"
    proc = cli(job_args(footage, out, checkpoints, "--ray", cluster, "--workers", "2"), engine_env)
    assert proc.returncode == 0, proc.stderr
    events = events_of(proc.stdout)  # Ray's own messages never reach stdout
    workers = {e["worker"] for e in events if e["event"] == "start"}
    assert len(workers) == 2, workers  # both actors computed frames
    results = [e for e in events if e["event"] == "result"]
    assert sorted(e["name"] for e in results) == [f"shot_{i:04d}" for i in range(1, COUNT + 1)]
    assert {e["worker"] for e in results} == workers
    assert outputs(out) == one_process  # byte-identical files
    states = frame_states(out)
    assert {s["state"] for s in states.values()} == {"done"} and {s["attempts"] for s in states.values()} == {1}
    driver = {s["pid"] for s in states.values()}
    assert len(driver) == 1 and not driver & {int(w.split(":")[1]) for w in workers}  # the driver wrote them all
    assert leftovers(out) == []
    # the same command again: nothing to compute, no cluster needed
    proc = cli(job_args(footage, out, checkpoints, "--ray", cluster, "--workers", "2"), engine_env)
    assert proc.returncode == 0, proc.stderr
    job = [e for e in events_of(proc.stdout) if e["event"] == "job"][0]
    assert (job["done"], job["skipped"]) == (0, COUNT)


def test_a_worker_killed_mid_job_costs_one_frame(cluster, footage, one_process, checkpoints, engine_env, tmp_path):
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "boost_core",
                               *map(str, job_args(footage, out, checkpoints, "--ray", cluster, "--workers", "2"))],
                              env=engine_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, killed = [], None
    for line in driver.stdout:
        events.append(json.loads(line))
        starts = [e for e in events if e["event"] == "start"]
        if killed is None and len(starts) == 3:  # the third frame was just handed to an actor: kill that actor
            killed = starts[-1]
            os.kill(int(killed["worker"].split(":")[1]), signal.SIGKILL)
    stderr = driver.stderr.read()
    assert driver.wait(timeout=600) == 0, stderr
    assert killed is not None
    errors = [e for e in events if e["event"] == "error"]
    assert [e["name"] for e in errors] == [killed["name"]] and "was lost" in errors[0]["message"]
    results = [e["name"] for e in events if e["event"] == "result"]
    assert sorted(results) == [f"shot_{i:04d}" for i in range(1, COUNT + 1)]  # each frame written once
    attempts = {name: s["attempts"] for name, s in frame_states(out).items()}
    assert attempts == {f"shot_{i:04d}": 2 if f"shot_{i:04d}" == killed["name"] else 1 for i in range(1, COUNT + 1)}
    assert outputs(out) == one_process
    assert leftovers(out) == []


def test_a_cancel_stops_the_ray_job_cleanly(cluster, footage, one_process, checkpoints, engine_env, tmp_path):
    """SIGTERM to the driver (Ray replaces the signal handlers: the job puts its own back): exit 130, a done event,
    no partial file, the frames written so far kept; the same command finishes the rest."""
    out = tmp_path / "out"
    args = job_args(footage, out, checkpoints, "--ray", cluster, "--workers", "2")
    driver = subprocess.Popen([sys.executable, "-m", "boost_core", *map(str, args)], env=engine_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    for line in driver.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "result":
            driver.send_signal(signal.SIGTERM)
            break
    events += events_of(driver.stdout.read())
    stderr = driver.stderr.read()
    assert driver.wait(timeout=120) == 130, stderr
    assert events[-1]["event"] == "done" and events[-1]["cancelled"] is True and events[-1]["ok"] >= 1
    assert leftovers(out) == []
    done = sorted(name for name, s in frame_states(out).items() if s["state"] == "done")
    assert done == sorted(e["name"] for e in events if e["event"] == "result")
    proc = cli(args, engine_env)
    assert proc.returncode == 0, proc.stderr
    job = [e for e in events_of(proc.stdout) if e["event"] == "job"][0]
    assert (job["skipped"], job["done"]) == (len(done), COUNT - len(done))
    assert outputs(out) == one_process


PROBE = """
import json, sys
from boost_core.cli.main import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as f:  # a file: with --ray, stdout is kept for the JSON lines
    json.dump({"code": code, "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))}, f)
"""


def test_without_ray_nothing_of_ray_is_imported(cluster, footage, checkpoints, engine_env, tmp_path):
    def probe(out, *extra):
        args = [footage, "--frames", "1", "--mode", "single", *weights_args(checkpoints), "--output", out,
                "--format", "npy", "--device", "cpu", "--progress", "none", *extra]
        found = out.with_name(out.name + ".json")
        proc = subprocess.run([sys.executable, "-c", PROBE, found, *map(str, args)], env=engine_env,
                              capture_output=True, text=True, timeout=600)
        return json.loads(found.read_text()), proc.stderr

    found, stderr = probe(tmp_path / "local")
    assert found == {"code": 0, "ray": []}, stderr
    found, stderr = probe(tmp_path / "ray", "--ray", cluster, "--workers", "1")  # the probe sees Ray when used
    assert found["code"] == 0 and "ray" in found["ray"], stderr
