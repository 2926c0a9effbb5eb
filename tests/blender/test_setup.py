"""Preferences actions in real Blender: weights download through a local HTTP mirror, Blender's online-access
switch, and the interpreter check."""

import http.server
import sys
import threading

import pytest

bpy = pytest.importorskip("bpy", reason="needs the bpy wheel")

from conftest import ext, prefs  # noqa: E402


@pytest.fixture
def mirror():
    """A local HTTP server on 127.0.0.1 serving the wrong bytes for MiDaS v2's official path."""
    body = b"definitely not the MiDaS checkpoint" * 1000
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path != "/intel-isl/MiDaS/releases/download/v2/model-f46da743.pt":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def online():
    system = bpy.context.preferences.system
    before = system.use_online_access
    system.use_online_access = True
    yield
    system.use_online_access = before


def test_downloads_are_disabled_while_blender_is_offline(addon):
    system = bpy.context.preferences.system
    system.use_online_access = False
    assert not bpy.app.online_access
    assert not bpy.ops.boost_depth.download_weights.poll()
    assert not bpy.ops.boost_depth.install_torch.poll()
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.boost_depth.download_weights(name="midas_v2")


def test_download_reports_a_bad_file_and_keeps_nothing(addon, online, mirror, tmp_path):
    url, hits = mirror
    p = prefs()
    p.models_dir = str(tmp_path / "models")
    p.mirror = url
    rows = {r["name"]: r for r in ext("operators.setup").weight_rows(p)}
    assert rows["midas_v2"]["status"] == "missing" and rows["merge_net"]["accept"]
    with pytest.raises(RuntimeError, match="is not the expected file"):
        bpy.ops.boost_depth.download_weights(name="midas_v2")
    assert hits == ["/intel-isl/MiDaS/releases/download/v2/model-f46da743.pt"]
    leftovers = (
        [f.name for f in (tmp_path / "models").iterdir() if f.is_file()]
        if (tmp_path / "models").exists()
        else []
    )
    assert "model-f46da743.pt" not in leftovers
    assert "midas_v2" in bpy.context.window_manager.boost_depth_job.last_error
    assert not ext("engine_link.running").running()


def test_check_interpreter(addon, engine_python):
    p = prefs()
    p.python_source, p.python_path = "CUSTOM", engine_python
    assert bpy.ops.boost_depth.check_interpreter() == {"FINISHED"}
    assert p.interpreter_report.startswith("OK: Python 3.")
    p.python_path = sys.executable  # the bpy test venv: no torch, no OpenCV
    with pytest.raises(RuntimeError, match="Not usable"):
        bpy.ops.boost_depth.check_interpreter()
    assert "torch" in p.interpreter_report


def test_download_through_the_preferences_fills_the_models_folder(addon, online, tmp_path, monkeypatch):
    """The success path: a studio registry (BOOST_DEPTH_REGISTRY) pins the hash of the file its server holds."""
    import hashlib
    import json

    body = bytes(range(256)) * 4096  # 1 MiB, several progress events
    path = "/studio/models/merge_finetuned.pth"
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path != path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = tmp_path / "studio.json"
        registry.write_text(json.dumps({"weights": [{
            "name": "merge_net", "filename": "latest_net_G.pth", "title": "Studio merge network",
            "urls": [f"http://127.0.0.1:{server.server_address[1]}{path}"], "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(), "licence": "studio internal", "networks": []}]}))
        monkeypatch.setenv("BOOST_DEPTH_REGISTRY", str(registry))  # inherited by the download child process
        p = prefs()
        p.models_dir = str(tmp_path / "models")
        p.mirror = ""
        assert bpy.ops.boost_depth.download_weights(name="merge_net") == {"FINISHED"}
    finally:
        server.shutdown()
        server.server_close()
    assert hits == [path]
    assert (tmp_path / "models" / "latest_net_G.pth").read_bytes() == body
    rows = {r["name"]: r for r in ext("operators.setup").weight_rows(p)}
    assert rows["merge_net"]["status"] == "ok"
    job = bpy.context.window_manager.boost_depth_job
    assert not job.last_error and not ext("engine_link.running").running()
    assert not [f for f in (tmp_path / "models").iterdir() if f.name.endswith((".part", ".lock"))]
