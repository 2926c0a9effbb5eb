"""boost_core.host.engine_process: the child-process runner behind Blender's operators and the batch script.

The children here are real processes (small Python programs speaking the JSON-lines protocol, crashing,
hanging or ignoring SIGTERM), and one real ``python -m boost_core --help``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from boost_core.host import engine_process as jobs


def child(code: str, **kwargs) -> jobs.EngineJob:
    return jobs.EngineJob([sys.executable, "-c", textwrap.dedent(code)], **kwargs)


def emit_lines(events):
    return "import json, sys\n" + "".join(f"print(json.dumps({e!r}), flush=True)\n" for e in events)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


EVENTS = [
    {"event": "start", "image": "a.png", "index": 0, "total": 2},
    {"event": "stage", "image": "a.png", "stage": "resolution_search"},
    {"event": "stage", "image": "a.png", "stage": "patches"},
    {"event": "progress", "image": "a.png", "done": 3, "of": 4, "fraction": 0.75},
    {
        "event": "result",
        "image": "a.png",
        "outputs": {"exr": "/x/a.exr"},
        "R": 672,
        "factor": 0.5,
        "kind": "inverse_depth",
        "shape": [64, 96],
    },
    {"event": "start", "image": "b.png", "index": 1, "total": 2},
    {
        "event": "result",
        "image": "b.png",
        "outputs": {"exr": "/x/b.exr"},
        "R": 448,
        "factor": 0.5,
        "kind": "inverse_depth",
        "shape": [64, 96],
    },
    {"event": "done", "ok": 2, "failed": 0},
]


def test_success_collects_results_and_progress_grows():
    job = child(emit_lines(EVENTS)).start()
    fractions = []
    job.wait(timeout=30, on_events=lambda j, events: fractions.append(j.fraction))
    assert job.state == jobs.SUCCEEDED and job.returncode == 0
    assert [r["image"] for r in job.results] == ["a.png", "b.png"]
    assert job.results[0]["outputs"]["exr"] == "/x/a.exr" and job.done == {
        "event": "done",
        "ok": 2,
        "failed": 0,
    }
    assert job.fraction == 1.0 and fractions == sorted(fractions)
    assert len(job.events) == len(EVENTS) and not job.errors


def test_success_message_carries_the_peak_memory_of_the_done_event():
    done = {"event": "done", "ok": 2, "failed": 0, "peak_rss_mib": 3993.6}
    job = child(emit_lines([*EVENTS[:-1], done])).start()
    assert job.wait(timeout=30) == jobs.SUCCEEDED
    assert job.message == "Done (peak memory 3.9 GiB)"
    done = {"event": "done", "ok": 0, "failed": 0, "peak_rss_mib": 2048, "cuda_peak_mib": 7475.2}
    gpu = child(emit_lines([done]))
    assert gpu.start().wait(timeout=30) == jobs.SUCCEEDED
    assert gpu.message == "Done (peak memory 2.0 GiB RAM, 7.3 GiB GPU)"


def test_fraction_inside_an_image_follows_stages():
    job = child(emit_lines(EVENTS[:4]) + "import time; time.sleep(30)\n").start()
    deadline = time.monotonic() + 20
    while len(job.events) < 4 and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.02)
    # image 1 of 2, inside "patches" (0.3 .. 0.95 of the image), 75 % through it
    assert job.fraction == pytest.approx((0.3 + 0.65 * 0.75) / 2)
    assert job.message == "a.png: 3/4"
    job.cancel()
    assert job.wait(timeout=20) == jobs.CANCELLED


def test_error_event_fails_the_job_with_its_message_and_hint():
    events = [
        {
            "event": "error",
            "image": None,
            "message": "Model weights 'merge_net' are missing",
            "hint": "run python -m boost_core weights download merge_net",
        },
        {"event": "done", "ok": 0, "failed": 1},
    ]
    job = child(emit_lines(events) + "sys.exit(2)\n").start()
    assert job.wait(timeout=30) == jobs.FAILED
    assert job.returncode == 2
    assert (
        "merge_net' are missing" in job.error_summary()
        and "weights download merge_net" in job.error_summary()
    )


def test_crash_reports_exit_code_and_the_last_stderr_line():
    job = child("""
        import json
        print(json.dumps({"event": "start", "image": "a.png", "index": 0, "total": 1}), flush=True)
        print("not json at all", flush=True)
        1 / 0
    """).start()
    assert job.wait(timeout=30) == jobs.FAILED
    summary = job.error_summary()
    assert "exited with code 1" in summary and "ZeroDivisionError" in summary
    report = job.error_report()
    assert "Traceback" in report and sys.executable in report
    assert job.noise == ["not json at all"]


def test_killed_child_is_reported_by_signal():
    job = child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)").start()
    assert job.wait(timeout=30) == jobs.FAILED
    assert "killed by signal SIGKILL" in job.error_summary()


def test_cancel_terminates_the_child():
    job = child("""
        import json, time
        print(json.dumps({"event": "start", "image": "a.png", "index": 0, "total": 1}), flush=True)
        time.sleep(60)
    """).start()
    while not job.events:
        job.poll()
        time.sleep(0.02)
    pid = job.pid
    assert alive(pid)
    job.cancel()
    assert job.wait(timeout=20) == jobs.CANCELLED
    assert not alive(pid) and job.elapsed < 20


def test_cancel_kills_a_child_that_ignores_sigterm_after_the_grace_period():
    job = child(
        """
        import json, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(json.dumps({"event": "start", "image": "a.png", "index": 0, "total": 1}), flush=True)
        time.sleep(60)
    """,
        grace=0.5,
    ).start()
    while not job.events:
        job.poll()
        time.sleep(0.02)
    pid = job.pid
    start = time.monotonic()
    job.cancel()
    assert job.wait(timeout=20) == jobs.CANCELLED
    assert 0.4 < time.monotonic() - start < 15
    assert not alive(pid) and job.returncode == -signal.SIGKILL


def test_cancel_reaches_grandchildren():
    job = child("""
        import json, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(json.dumps({"event": "start", "image": "a.png", "index": 0, "total": 1, "grandchild": p.pid}),
              flush=True)
        time.sleep(60)
    """).start()
    while not job.events:
        job.poll()
        time.sleep(0.02)
    grandchild = job.events[0]["grandchild"]
    job.cancel()
    assert job.wait(timeout=20) == jobs.CANCELLED
    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_missing_interpreter_raises_on_start():
    job = jobs.EngineJob(["/nonexistent/python3", "-m", "boost_core"])
    with pytest.raises(OSError):
        job.start()
    assert job.state == jobs.PENDING


def test_engine_environment_makes_the_extension_importable_from_anywhere(tmp_path):
    env = jobs.engine_environment(tmp_path / "deps")
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == str(jobs.EXTENSION_DIR) and paths[1] == str(tmp_path / "deps")
    assert env["PYTHONNOUSERSITE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    out = subprocess.run(
        [sys.executable, "-c", "import boost_core.host.engine_process as j; print(j.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(jobs.EXTENSION_DIR / "boost_core" / "host" / "engine_process.py")


def test_real_engine_help_runs_through_the_job(tmp_path):
    job = jobs.EngineJob(
        jobs.engine_command(sys.executable, ["--help"]), env=jobs.engine_environment(), cwd=tmp_path
    ).start()
    assert job.wait(timeout=120) == jobs.SUCCEEDED, job.error_report()
    assert any("--net" in line for line in job.noise)  # argparse's help is plain text on stdout


def test_estimate_arguments():
    args = jobs.estimate_arguments(
        ["a.png"],
        net="leres",
        mode="r0",
        output="out",
        formats=["exr", "png16"],
        max_res=2000,
        base_weights="b.pth",
        merge_weights=None,
        models_dir="m",
    )
    assert args[:1] == ["a.png"]
    joined = " ".join(args)
    for part in (
        "--net leres",
        "--mode r0",
        "--output out",
        "--format exr,png16",
        "--progress json",
        "--max-res 2000",
        "--base-weights b.pth",
        "--models-dir m",
        "--device auto",
    ):
        assert part in joined
    assert "--merge-weights" not in args


def test_function_job_success_failure_and_cancel():
    def work(progress, cancel):
        progress(0.5, "half")
        return 42

    job = jobs.FunctionJob(work).start()
    assert job.wait(timeout=10) == jobs.SUCCEEDED and job.value == 42 and job.fraction == 1.0

    def broken(progress, cancel):
        raise RuntimeError("pip said no")

    job = jobs.FunctionJob(broken).start()
    assert job.wait(timeout=10) == jobs.FAILED and job.error_summary() == "pip said no"
    assert "RuntimeError" in job.error_report()

    def patient(progress, cancel):
        cancel.wait(10)

    job = jobs.FunctionJob(patient).start()
    job.cancel()
    assert job.wait(timeout=10) == jobs.CANCELLED


def test_kill_stops_the_child_at_once():
    job = child("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)").start()
    pid = job.pid
    job.kill()
    assert job.wait(timeout=20) == jobs.CANCELLED
    assert not alive(pid) and job.returncode == -signal.SIGKILL


def test_partial_events_and_the_engine_clock_are_read():
    events = [
        {"event": "start", "image": "a.png", "index": 0, "total": 1},
        {"event": "stage", "image": "a.png", "stage": "whole_image", "elapsed_s": 0.1},
        {"event": "progress", "image": "a.png", "stage": "whole_image", "step": 1, "steps": 3, "fraction": 0.3333,
         "elapsed_s": 2.0},
        {"event": "partial", "image": "a.png", "path": "/x/.partial/a.exr", "done": 0, "of": None, "elapsed_s": 6.0},
        {"event": "progress", "image": "a.png", "done": 0, "of": 2, "fraction": 0.0, "elapsed_s": 6.5},
        {"event": "progress", "image": "a.png", "done": 1, "of": 2, "fraction": 0.5, "elapsed_s": 12.5,
         "eta_s": 6.0},
        {"event": "partial", "image": "a.png", "path": "/x/.partial/a.exr", "done": 1, "of": 2, "elapsed_s": 12.6,
         "eta_s": 6.0},
    ]
    job = child(emit_lines(events)).start()
    seen = []
    job.wait(30, on_events=lambda j, new: seen.append((j.partial_count, j.eta, j.message)))
    assert job.state == jobs.SUCCEEDED
    assert job.partial == events[-1] and job.partial_count == 2
    assert job.engine_elapsed == 12.6 and job.eta == 6.0
    args = jobs.estimate_arguments(["p.png"], net="midas_v2", mode="final", output="/o", partial=True,
                                   partial_interval=2)
    assert args[-3:] == ["--partial", "--partial-interval", "2"]
    assert "--partial" not in jobs.estimate_arguments(["p.png"], net="midas_v2", mode="final", output="/o")


def test_whole_image_sub_steps_show_in_the_message():
    job = jobs.EngineJob(["true"])
    job._handle({"event": "start", "image": "a.png", "index": 0, "total": 1})
    job._handle({"event": "stage", "image": "a.png", "stage": "whole_image"})
    job._handle({"event": "progress", "image": "a.png", "stage": "whole_image", "step": 2, "steps": 3,
                 "fraction": 0.6667, "elapsed_s": 4.0})
    assert job.message == "a.png: whole image 2/3"
    assert job.eta is None and job.engine_elapsed == 4.0
    start, end = jobs.STAGE_START["whole_image"], jobs.STAGE_START["patches"]
    assert job.fraction == pytest.approx(start + (end - start) * 0.6667)
