"""boost_core.weights.download against a real HTTP server on 127.0.0.1 (tests/weights_server.py)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from weights_server import FileServer

from boost_core.weights import download as D

ROOT = Path(__file__).resolve().parent.parent


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def wait_for_request(server: FileServer, path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.requests_for(path):
        assert time.monotonic() < deadline, f"no request for {path}"
        time.sleep(0.01)


def leftovers(dest: Path) -> list[str]:
    """Files beside ``dest`` other than ``dest`` itself (part, meta, lock, temp files)."""
    return sorted(p.name for p in dest.parent.iterdir() if p != dest)


def test_fetch_writes_verified_file_with_progress_and_user_agent(server, tmp_path):
    data = payload(3 * 1024 * 1024 + 123)
    server.add("/m/a.bin", data, chunk_delay=0.008)  # ~0.4 s: several 0.1 s progress ticks, even under load
    events: list[D.Progress] = []
    dest = tmp_path / "models" / "a.bin"

    res = D.fetch([server.url + "/m/a.bin"], dest, size=len(data), sha256=sha(data), progress=events.append)

    assert dest.read_bytes() == data
    assert res.sha256 == sha(data) and res.size == len(data) and not res.reused
    assert leftovers(dest) == []
    downloading = [e for e in events if e.state == "downloading"]
    assert len(downloading) >= 3
    assert [e.done for e in downloading] == sorted(e.done for e in downloading)
    assert downloading[-1].done == len(data) and downloading[-1].total == len(data)
    assert downloading[-1].fraction == 1.0
    assert any(e.rate and e.rate > 0 for e in downloading)
    assert any(e.eta is not None for e in downloading)
    assert events[-1].state == "done"
    (req,) = server.requests_for("/m/a.bin")
    assert req.headers["User-Agent"] == D.USER_AGENT
    assert "Range" not in req.headers


def test_resume_after_dropped_connection_sends_range(server, tmp_path):
    data = payload(2_500_000, seed=1)
    server.add("/a.bin", data, drop_at=1_000_000, drops=1, etag='"v1"')
    dest = tmp_path / "a.bin"

    D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data), retry_wait=0.01)

    assert dest.read_bytes() == data
    first, second = server.requests_for("/a.bin")
    assert "Range" not in first.headers
    assert second.headers["Range"] == "bytes=1000000-"
    assert second.headers["If-Range"] == '"v1"'
    assert leftovers(dest) == []


def test_interrupted_run_keeps_part_and_next_run_resumes(server, tmp_path):
    data = payload(1_500_000, seed=2)
    server.add("/a.bin", data, drop_at=600_000, drops=1)
    dest = tmp_path / "a.bin"

    with pytest.raises(D.ConnectionDropped) as err:
        D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data), retries=0)
    assert "resumes" in err.value.hint
    assert not dest.exists()
    assert D.part_path(dest).read_bytes() == data[:600_000]

    res = D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data))
    assert dest.read_bytes() == data
    assert res.resumed_from == 600_000
    assert server.requests_for("/a.bin")[-1].headers["Range"] == "bytes=600000-"
    assert leftovers(dest) == []


def test_resume_through_a_redirect_keeps_the_range(server, tmp_path):
    data = payload(900_000, seed=19)
    server.add("/resolve/rev/a.bin", redirect_to="/cdn/a.bin")
    server.add("/cdn/a.bin", data, drop_at=400_000, drops=1)
    dest = tmp_path / "a.bin"
    D.fetch([server.url + "/resolve/rev/a.bin"], dest, size=len(data), sha256=sha(data), retry_wait=0.01)
    assert dest.read_bytes() == data
    for path in ("/resolve/rev/a.bin", "/cdn/a.bin"):
        assert [r.headers.get("Range") for r in server.requests_for(path)] == [None, "bytes=400000-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = payload(1_200_000, seed=3)
    server.add("/a.bin", data, drop_at=500_000, drops=1, ignore_range=True)
    dest = tmp_path / "a.bin"
    D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data), retry_wait=0.01)
    assert dest.read_bytes() == data
    assert server.requests_for("/a.bin")[1].headers["Range"] == "bytes=500000-"


def test_mismatched_content_range_is_not_spliced(server, tmp_path):
    data = payload(900_000, seed=4)
    server.add("/a.bin", data, drop_at=300_000, drops=1, bad_range=True)
    dest = tmp_path / "a.bin"
    D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data), retry_wait=0.01)
    assert dest.read_bytes() == data
    ranges = [r.headers.get("Range") for r in server.requests_for("/a.bin")]
    assert ranges == [None, "bytes=300000-", None]


def test_changed_file_on_server_restarts_through_if_range(server, tmp_path):
    old, new = payload(800_000, seed=5), payload(800_000, seed=6)
    route = server.add("/a.bin", old, drop_at=200_000, drops=1, etag='"old"')
    dest = tmp_path / "a.bin"
    with pytest.raises(D.ConnectionDropped):
        D.fetch([server.url + "/a.bin"], dest, size=len(new), sha256=sha(new), retries=0)
    route.data, route.etag = new, '"new"'
    D.fetch([server.url + "/a.bin"], dest, size=len(new), sha256=sha(new))
    assert dest.read_bytes() == new
    assert server.requests_for("/a.bin")[-1].headers["If-Range"] == '"old"'


def test_hash_mismatch_leaves_no_file(server, tmp_path):
    good, bad = payload(700_000, seed=7), payload(700_000, seed=8)
    server.add("/a.bin", bad)
    dest = tmp_path / "a.bin"
    with pytest.raises(D.IntegrityError) as err:
        D.fetch([server.url + "/a.bin"], dest, size=len(good), sha256=sha(good))
    assert "SHA-256" in str(err.value) and "deleted" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_prefix_mismatch_leaves_no_file(server, tmp_path):
    data = payload(10_000, seed=9)
    server.add("/a.bin", data)
    dest = tmp_path / "a.bin"
    wrong_prefix = "0" * 8 if not sha(data).startswith("0" * 8) else "f" * 8
    with pytest.raises(D.IntegrityError):
        D.fetch([server.url + "/a.bin"], dest, sha256_prefix=wrong_prefix)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_refused_before_downloading(server, tmp_path):
    data = payload(50_000, seed=10)
    server.add("/a.bin", data, chunk_delay=0.2, chunk=1000)  # streaming it all would take 10 s
    dest = tmp_path / "a.bin"
    t0 = time.monotonic()
    with pytest.raises(D.IntegrityError) as err:
        D.fetch([server.url + "/a.bin"], dest, size=len(data) + 1)
    assert time.monotonic() - t0 < 5.0  # refused on Content-Length, did not stream the body
    assert "serves 50000 bytes" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_404_then_next_source(server, tmp_path):
    data = payload(20_000, seed=11)
    server.add("/good/a.bin", data)
    dest = tmp_path / "a.bin"
    res = D.fetch([server.url + "/missing/a.bin", server.url + "/good/a.bin"], dest, sha256=sha(data))
    assert res.url.endswith("/good/a.bin")
    assert [r.path for r in server.requests] == ["/missing/a.bin", "/good/a.bin"]


def test_all_sources_404(server, tmp_path):
    dest = tmp_path / "a.bin"
    with pytest.raises(D.NotFoundError) as err:
        D.fetch([server.url + "/x/a.bin", server.url + "/y/a.bin"], dest)
    assert "/x/a.bin" in str(err.value) and "/y/a.bin" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_stalled_server_times_out_quickly_and_keeps_part(server, tmp_path):
    data = payload(100_000, seed=12)
    server.add("/a.bin", data, stall_at=40_000, stall_for=20.0)
    dest = tmp_path / "a.bin"
    t0 = time.monotonic()
    with pytest.raises(D.DownloadTimeout) as err:
        D.fetch([server.url + "/a.bin"], dest, size=len(data), timeout=0.3, retries=1, retry_wait=0.05)
    elapsed = time.monotonic() - t0
    assert elapsed < 6.0  # two 0.3 s timeouts, not the server's 20 s stall
    assert err.value.hint
    assert D.part_path(dest).stat().st_size == 40_000
    assert server.requests_for("/a.bin")[1].headers["Range"] == "bytes=40000-"


def test_server_that_never_answers_times_out(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts TCP, never sends a byte
    try:
        url = "http://127.0.0.1:%d/a.bin" % listener.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(D.DownloadTimeout):
            D.fetch([url], tmp_path / "a.bin", timeout=0.2, retries=1, retry_wait=0.01)
        assert time.monotonic() - t0 < 6.0
    finally:
        listener.close()


def test_connection_refused_is_a_network_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(D.NetworkError) as err:
        D.fetch([f"http://127.0.0.1:{port}/a.bin"], tmp_path / "a.bin", timeout=1.0)
    assert "refused" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_between_chunks_and_keeps_part(server, tmp_path):
    data = payload(2_000_000, seed=13)
    server.add("/a.bin", data, chunk_delay=0.01)
    dest = tmp_path / "a.bin"
    cancel = threading.Event()

    def progress(p: D.Progress) -> None:
        if p.state == "downloading" and p.done > 0:
            cancel.set()

    with pytest.raises(D.DownloadCancelled):
        D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data), progress=progress,
                cancel=cancel)
    assert not dest.exists()
    kept = D.part_path(dest).stat().st_size
    assert 0 < kept < len(data)
    assert not D.lock_path(dest).exists()


def test_two_threads_one_download(server, tmp_path):
    data = payload(1_000_000, seed=14)
    server.add("/a.bin", data, chunk=50_000, chunk_delay=0.02)
    dest = tmp_path / "a.bin"
    results, errors, states = [], [], []

    def job():
        try:
            results.append(D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data),
                                   progress=lambda p: states.append(p.state)))
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=job) for _ in range(2)]
    threads[0].start()
    wait_for_request(server, "/a.bin")
    threads[1].start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert dest.read_bytes() == data
    assert len(server.requests_for("/a.bin")) == 1
    assert sorted(r.reused for r in results) == [False, True]
    assert "waiting" in states
    assert leftovers(dest) == []


def test_two_processes_one_download(server, tmp_path, engine_env):
    data = payload(1_000_000, seed=15)
    server.add("/a.bin", data, chunk=50_000, chunk_delay=0.1)  # about 2 s
    dest = tmp_path / "a.bin"
    script = (
        "import json, sys; from boost_core.weights import download as D\n"
        "r = D.fetch([sys.argv[1]], sys.argv[2], size=int(sys.argv[3]), sha256=sys.argv[4])\n"
        "print(json.dumps({'reused': r.reused, 'sha256': r.sha256}))\n"
    )
    argv = [sys.executable, "-c", script, server.url + "/a.bin", str(dest), str(len(data)), sha(data)]
    env = dict(engine_env, no_proxy="127.0.0.1")
    for var in ("http_proxy", "HTTP_PROXY"):
        env.pop(var, None)
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)]
    wait_for_request(server, "/a.bin")  # the first process is downloading: start the second one
    procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(o[0]) for o in outs]
    assert sorted(r["reused"] for r in results) == [False, True]
    assert {r["sha256"] for r in results} == {sha(data)}
    assert dest.read_bytes() == data
    assert len(server.requests_for("/a.bin")) == 1
    assert leftovers(dest) == []


def test_lock_timeout_names_the_other_job(server, tmp_path):
    server.add("/a.bin", b"x")
    dest = tmp_path / "a.bin"
    with D.FileLock(D.lock_path(dest)):
        t0 = time.monotonic()
        with pytest.raises(D.LockTimeout) as err:
            D.fetch([server.url + "/a.bin"], dest, lock_timeout=0.3)
        assert time.monotonic() - t0 < 5.0
    assert "another job" in str(err.value) and str(os.getpid()) in str(err.value)
    assert server.requests == []


def test_not_enough_disk_space_is_refused_up_front(server, tmp_path):
    server.add("/huge.bin", b"0" * 1000, fake_length=1 << 60)
    dest = tmp_path / "huge.bin"
    with pytest.raises(D.DiskFullError) as err:
        D.fetch([server.url + "/huge.bin"], dest)
    assert "disk space" in str(err.value) and "--models-dir" in err.value.hint
    assert not dest.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_disk_full_while_writing(server, tmp_path):
    data = payload(100_000, seed=16)
    server.add("/a.bin", data)
    dest = tmp_path / "a.bin"
    D.part_path(dest).symlink_to("/dev/full")  # every write answers ENOSPC
    with pytest.raises(D.DiskFullError):
        D.fetch([server.url + "/a.bin"], dest, size=len(data))
    assert not dest.exists()


def test_complete_part_is_verified_without_a_request(server, tmp_path):
    data = payload(300_000, seed=17)
    server.add("/a.bin", data)
    dest = tmp_path / "a.bin"
    D.part_path(dest).write_bytes(data)
    res = D.fetch([server.url + "/a.bin"], dest, size=len(data), sha256=sha(data))
    assert dest.read_bytes() == data and res.resumed_from == len(data)
    assert server.requests == []


def test_file_url_source_resumes(tmp_path):
    data = payload(400_000, seed=18)
    src = tmp_path / "mirror" / "a.bin"
    src.parent.mkdir()
    src.write_bytes(data)
    dest = tmp_path / "models" / "a.bin"
    dest.parent.mkdir()
    url = src.as_uri()
    D.part_path(dest).write_bytes(data[:150_000])
    (dest.parent / "a.bin.part.json").write_text(json.dumps({"url": url}))
    res = D.fetch([url], dest, size=len(data), sha256=sha(data))
    assert dest.read_bytes() == data and res.resumed_from == 150_000
