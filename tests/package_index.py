"""A PEP 503 "simple" package index on 127.0.0.1 serving one small pure-Python wheel built here, so pip installs
are tested against a real HTTP index without the live one.

    with PackageIndex() as index:      # index.url = "http://127.0.0.1:PORT/simple"
        pip install --isolated --index-url index.url bdtestpkg==1.0.0
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

NAME, VERSION = "bdtestpkg", "1.0.0"
WHEEL = f"{NAME}-{VERSION}-py3-none-any.whl"


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

    def __init__(self, folder: Path):
        self.wheel = build_wheel(folder)
        self.digest = hashlib.sha256(self.wheel.read_bytes()).hexdigest()
        self.requests: list[str] = []

    def __enter__(self) -> PackageIndex:
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                index.requests.append(self.path)
                path = self.path.split("?")[0].rstrip("/")
                if path == "/simple":
                    body = f'<html><body><a href="/simple/{NAME}/">{NAME}</a></body></html>'.encode()
                elif path == f"/simple/{NAME}":
                    body = (f'<html><body><a href="/files/{WHEEL}#sha256={index.digest}">{WHEEL}</a>'
                            "</body></html>").encode()
                elif path == f"/files/{WHEEL}":
                    body = index.wheel.read_bytes()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if path.startswith("/simple") else "application/zip")
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
