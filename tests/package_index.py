"""A PEP 503 "simple" package index on 127.0.0.1 serving one small pure-Python wheel built here (and any real
files a test adds, e.g. the torch wheel on this disk), so installs are tested against a real HTTP index without
the live one.

    with PackageIndex(tmp) as index:      # index.url = "http://127.0.0.1:PORT/simple"
        pip install --isolated --index-url index.url bdtestpkg==1.0.0
    with PackageIndex(tmp, files={"torch": [Path("/opt/wheels/torch-...whl")]}) as index:
        ...                               # /simple/torch/ lists it with its #sha256= (hashlib, computed here)
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import shutil
import threading
import urllib.parse
import zipfile
from pathlib import Path

NAME, VERSION = "bdtestpkg", "1.0.0"
WHEEL = f"{NAME}-{VERSION}-py3-none-any.whl"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path) -> Path:
    """A valid wheel of package ``bdtestpkg`` (``bdtestpkg.__version__ == "1.0.0"``) in ``folder``."""
    files = {
        f"{NAME}/__init__.py": f'__version__ = "{VERSION}"\n'.encode(),
        f"{NAME}-{VERSION}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
        f"{NAME}-{VERSION}.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: boost-depth-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += f"{NAME}-{VERSION}.dist-info/RECORD,,\n"
    path = folder / WHEEL
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{NAME}-{VERSION}.dist-info/RECORD", record)
    return path


class PackageIndex:
    """Context manager: the index runs in a thread for the block's duration; ``requests`` lists the paths asked."""

    def __init__(self, folder: Path, files: dict[str, list[Path]] | None = None):
        self.wheel = build_wheel(folder)
        self.digest = hashlib.sha256(self.wheel.read_bytes()).hexdigest()
        self.requests: list[str] = []
        self.projects: dict[str, list[tuple[Path, str]]] = {NAME: [(self.wheel, self.digest)]}
        for project, paths in (files or {}).items():
            self.projects[project] = [(Path(f), _file_sha256(Path(f))) for f in paths]

    def __enter__(self) -> PackageIndex:
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                index.requests.append(self.path)
                path = self.path.split("?")[0].rstrip("/")
                files = {f.name: f for entries in index.projects.values() for f, _ in entries}
                if path == "/simple":
                    body = "".join(f'<a href="/simple/{p}/">{p}</a>' for p in index.projects).encode()
                elif path.startswith("/simple/") and path[len("/simple/"):] in index.projects:
                    body = "".join(f'<a href="/files/{urllib.parse.quote(f.name)}#sha256={digest}">{f.name}</a>'
                                   for f, digest in index.projects[path[len("/simple/"):]]).encode()
                elif path.startswith("/files/") and urllib.parse.unquote(path[len("/files/"):]) in files:
                    source = files[urllib.parse.unquote(path[len("/files/"):])]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    self.send_header("Content-Length", str(source.stat().st_size))
                    self.end_headers()
                    with open(source, "rb") as f:
                        shutil.copyfileobj(f, self.wfile, 1 << 20)
                    return
                else:
                    self.send_error(404)
                    return
                body = b"<html><body>" + body + b"</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def pip_args(self) -> list[str]:
        """pip options that use only this index (no config, no environment, no cache)."""
        return ["--isolated", "--index-url", self.url, "--no-cache-dir", "--retries", "0", "--timeout", "10"]

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
