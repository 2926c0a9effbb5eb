"""Downloads that survive interruptions: stream, resume, verify, lock, then rename into place.

Standard library only (``urllib``), so Blender's bundled Python can use it before any dependency is
installed. One call, :func:`fetch`, does the whole job for one destination file:

1. takes a cross-process lock ``<file>.lock`` beside the destination, so two jobs (threads or
   processes) never write the same file; a job that had to wait and then finds the file finished by
   the other job returns it instead of downloading again;
2. streams the body into ``<file>.part`` in the same folder, hashing it (SHA-256) on the way;
3. after a dropped connection or a timeout, asks for the rest with ``Range: bytes=N-`` (and
   ``If-Range`` when the server gave a validator); an answer that is not ``206`` with a matching
   ``Content-Range`` restarts from byte 0; a ``.part`` left by an earlier, interrupted run is resumed
   the same way;
4. checks size and hash; a mismatch deletes the ``.part`` (nothing bad is left behind);
5. ``os.replace`` moves the verified file into place atomically.

Sources are tried in order (official address, then mirrors). ``file://`` addresses work too (a
mirror that is a shared folder). Errors are :class:`DownloadError` subclasses whose ``hint`` says
what to do. Sizes are in bytes, rates in bytes per second, times in seconds.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__

USER_AGENT = (
    f"BoostDepth/{__version__} Python-urllib/{sys.version_info.major}.{sys.version_info.minor}"
)
"""Sent with every request; hosts such as Hugging Face and GitHub expect a descriptive one."""

CHUNK_SIZE = 1 << 20  # bytes read per socket read
PROGRESS_INTERVAL = 0.1  # seconds between two progress callbacks (the last one is always sent)
RATE_WINDOW = 5.0  # seconds of history behind the reported rate
DEFAULT_LOCK_TIMEOUT = 4 * 3600.0  # seconds a job waits for another job downloading the same file


# --------------------------------------------------------------------------------------------- errors
class DownloadError(Exception):
    """A download failed. ``str(e)`` says what happened, ``e.hint`` what to do about it."""

    def __init__(self, message: str, *, hint: str = "", url: str | None = None):
        super().__init__(message)
        self.hint = hint
        self.url = url


class NotFoundError(DownloadError):
    """The server answered 404/410: it has no file at that address."""


class HTTPStatusError(DownloadError):
    """The server answered another HTTP error (401, 403, 5xx after retries...)."""

    def __init__(self, message: str, *, status: int = 0, hint: str = "", url: str | None = None):
        super().__init__(message, hint=hint, url=url)
        self.status = status


class DownloadTimeout(DownloadError):
    """The server stopped sending for longer than the timeout, on every retry."""


class NetworkError(DownloadError):
    """The host could not be reached at all (no network, unknown host, connection refused, TLS)."""


class ConnectionDropped(DownloadError):
    """The connection kept dropping before the end of the file, on every retry."""


class DiskFullError(DownloadError):
    """No space left on the destination's disk (before or during the download)."""


class IntegrityError(DownloadError):
    """The bytes received do not have the expected size or SHA-256; they were deleted."""


class DownloadCancelled(DownloadError):
    """The caller's cancel event was set; the ``.part`` file is kept so a later run resumes."""


class LockTimeout(DownloadError):
    """Another job held the destination's lock for longer than ``lock_timeout``."""


class _Retry(Exception):
    """Internal: a transient failure; ``error`` is raised when retries run out."""

    def __init__(self, error: DownloadError, progressed: bool):
        super().__init__(str(error))
        self.error = error
        self.progressed = progressed


class _Restart(Exception):
    """Internal: the partial file cannot be resumed; start again from byte 0 (not a failure)."""


# ------------------------------------------------------------------------------------------- progress
@dataclass(frozen=True)
class Progress:
    """One progress report.

    ``state``: ``"waiting"`` (another job holds the lock), ``"downloading"``, ``"verifying"``
    (hashing bytes already on disk) or ``"done"``. ``done``/``total`` are bytes (``total`` is
    ``None`` when the server does not say), ``rate`` bytes per second over the last few seconds,
    ``eta`` seconds left (``None`` when unknown), ``resumed_from`` the byte offset this run started at.
    """

    state: str
    done: int
    total: int | None
    rate: float | None = None
    eta: float | None = None
    url: str | None = None
    resumed_from: int = 0

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or ``None`` when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


class _Meter:
    """Turns byte counts into throttled :class:`Progress` reports with a windowed rate."""

    def __init__(self, callback: ProgressCallback | None, url: str, total: int | None, start: int):
        self.callback = callback
        self.url = url
        self.total = total
        self.start = start
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), start)])
        self.last_emit = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()
        if self.callback is None or (not final and now - self.last_emit < PROGRESS_INTERVAL):
            return
        self.last_emit = now
        t0, d0 = self.samples[0]
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else None
        eta = None
        if rate and self.total is not None:
            eta = max(0.0, (self.total - done) / rate)
        self.callback(Progress("downloading", done, self.total, rate, eta, self.url, self.start))


# ----------------------------------------------------------------------------------------------- lock
class FileLock:
    """An exclusive lock on ``path`` shared by threads and processes (flock / msvcrt).

    The lock file is created on demand and removed on release (POSIX; on Windows it may stay).
    ``timeout`` (seconds, ``None`` = forever) bounds the wait; ``cancel`` (an Event) ends it early;
    ``on_wait`` is called once when the lock is found busy.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        timeout: float | None = None,
        poll: float = 0.05,
        cancel: threading.Event | None = None,
        on_wait: Callable[[], None] | None = None,
    ):
        self.path = Path(path)
        self.timeout = timeout
        self.poll = poll
        self.cancel = cancel
        self.on_wait = on_wait
        self._fd: int | None = None

    def _try_lock(self, fd: int) -> bool:
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK, errno.EDEADLK):
                return False
            raise

    def acquire(self) -> None:
        start = time.monotonic()
        waited = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except PermissionError as e:
                raise DownloadError(
                    f"cannot create the lock file {self.path}: {e.strerror}",
                    hint="choose a models folder you can write to (--models-dir or BOOST_DEPTH_MODELS)",
                ) from e
            if self._try_lock(fd):
                # The holder before us may have unlinked the file between our open and our lock:
                # then we hold a lock on a dead inode and must try again on the live one.
                if os.name != "nt":
                    try:
                        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                    except FileNotFoundError:
                        same = False
                    if not same:
                        os.close(fd)
                        continue
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
                except OSError:
                    pass  # the note is for humans only
                self._fd = fd
                return
            os.close(fd)
            if not waited:
                waited = True
                if self.on_wait is not None:
                    self.on_wait()
            if self.cancel is not None and self.cancel.is_set():
                raise DownloadCancelled(f"cancelled while waiting for the lock {self.path}")
            if self.timeout is not None and time.monotonic() - start >= self.timeout:
                holder = ""
                try:
                    holder = self.path.read_text(errors="replace").strip()
                except OSError:
                    pass
                raise LockTimeout(
                    f"another job is still writing {self.path.with_suffix('')} after waiting "
                    f"{self.timeout:g} s" + (f" (lock held by process {holder})" if holder else ""),
                    hint="wait for that download to finish, or stop it; if no such job runs any more, "
                    f"delete {self.path}",
                )
            time.sleep(self.poll)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.name != "nt":
            try:
                os.unlink(self.path)  # while still held, so no one can lock this inode after us
            except OSError:
                pass
            os.close(fd)  # closing releases the flock
        else:
            import msvcrt

            try:
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            except OSError:
                pass
            os.close(fd)
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------------------------------- helpers
def part_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of an unfinished download of ``dest`` live: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def lock_path(dest: str | os.PathLike) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".lock")


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def sha256_file(
    path: str | os.PathLike,
    *,
    limit: int | None = None,
    cancel: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> hashlib._Hash:
    """SHA-256 of the first ``limit`` bytes (all when ``None``) of ``path``, as a hashlib object.

    ``progress`` receives ``Progress("verifying", ...)`` reports; ``cancel`` aborts with
    :class:`DownloadCancelled`.
    """
    h = hashlib.sha256()
    total = os.path.getsize(path) if limit is None else limit
    done = 0
    last = 0.0
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while limit is None or done < limit:
            n = f.readinto(view if limit is None else view[: min(CHUNK_SIZE, limit - done)])
            if not n:
                break
            h.update(view[:n])
            done += n
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"cancelled while checking {path}")
            now = time.monotonic()
            if progress is not None and now - last >= PROGRESS_INTERVAL:
                last = now
                progress(Progress("verifying", done, total))
    if progress is not None:
        progress(Progress("verifying", done, total))
    return h


def _unlink(*paths: Path) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_meta(dest: Path) -> dict:
    try:
        return json.loads(_meta_path(dest).read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(dest: Path, meta: dict) -> None:
    path = _meta_path(dest)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path)


def _is_disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def _disk_full(path: Path, need: int | None) -> DiskFullError:
    free = None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        pass
    what = f" ({human_size(need)} needed, {human_size(free)} free)" if need is not None and free is not None else ""
    return DiskFullError(
        f"not enough disk space for {path.name} in {path.parent}{what}",
        hint="free some space (a partial download is kept as .part and resumes), or choose another "
        "models folder with --models-dir / BOOST_DEPTH_MODELS",
    )


def human_size(n: int | float | None) -> str:
    """Bytes in decimal units for messages: 318268048 -> "318.3 MB"; None -> "?"."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)
_CONTENT_RANGE_UNSAT = re.compile(r"bytes\s+\*/(\d+)", re.I)


# ---------------------------------------------------------------------------------------- the source
class _FileSource:
    """A ``file://`` address read like an HTTP response that honours ranges."""

    def __init__(self, url: str, offset: int):
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        try:
            self._f = open(path, "rb")
        except FileNotFoundError as e:
            raise NotFoundError(f"no file at {url}", url=url, hint="check the mirror folder") from e
        except OSError as e:
            raise NetworkError(f"cannot read {url}: {e.strerror}", url=url) from e
        size = os.fstat(self._f.fileno()).st_size
        self.total = size
        self.status = 206 if offset else 200
        self.start = offset if offset <= size else 0  # a longer .part is not from this file
        self._f.seek(self.start)
        self.headers: dict[str, str] = {}

    def read1(self, n: int) -> bytes:
        return self._f.read(n)

    def close(self) -> None:
        self._f.close()


def _open(url: str, offset: int, meta: dict, timeout: float, user_agent: str):
    """Open ``url`` from byte ``offset``. Returns ``(response, start, total)``.

    ``start`` is where the body begins (0 when the server ignored the range), ``total`` the whole
    file's size or ``None``. Raises :class:`_Retry` for transient trouble, :class:`_Restart` when the
    range cannot be honoured, :class:`DownloadError` otherwise.
    """
    if urllib.parse.urlsplit(url).scheme == "file":
        src = _FileSource(url, offset)
        return src, src.start, src.total
    headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = meta.get("etag")
        if etag and not etag.startswith("W/"):
            headers["If-Range"] = etag
        elif meta.get("last_modified"):
            headers["If-Range"] = meta["last_modified"]
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        code = e.code
        content_range = e.headers.get("Content-Range", "") if e.headers else ""
        e.close()
        if code == 416 and offset:
            m = _CONTENT_RANGE_UNSAT.search(content_range)
            if m and int(m.group(1)) == offset:
                return None, offset, offset  # the partial file is already complete
            raise _Restart() from e
        if code in (404, 410):
            raise NotFoundError(f"HTTP {code}: no file at {url}", url=url) from e
        err = HTTPStatusError(f"HTTP {code} {e.reason} from {url}", status=code, url=url)
        if code in (408, 429) or 500 <= code < 600:
            raise _Retry(err, False) from e
        if code in (401, 403):
            err.hint = "the server refused access; if it is your mirror, check its permissions"
        raise err from e
    except urllib.error.URLError as e:
        raise _classify_url_error(e, url) from e
    except (TimeoutError, socket.timeout) as e:
        raise _Retry(DownloadTimeout(f"timed out connecting to {url}", url=url), False) from e
    except (ConnectionError, http.client.HTTPException) as e:
        raise _Retry(ConnectionDropped(f"connection to {url} failed: {e}", url=url), False) from e

    status = resp.status
    total = None
    if status == 206:
        m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            resp.close()
            raise _Restart()  # a range we did not ask for: do not splice it in
        start = offset
        total = int(m.group(3)) if m.group(3) != "*" else None
    elif status == 200:
        start = 0
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    else:
        resp.close()
        raise DownloadError(f"unexpected HTTP {status} from {url}", url=url)
    return resp, start, total


def _classify_url_error(e: urllib.error.URLError, url: str) -> Exception:
    reason = e.reason
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return _Retry(DownloadTimeout(f"timed out connecting to {host}", url=url), False)
    if isinstance(reason, socket.gaierror):
        return NetworkError(
            f"cannot resolve {host}: no network, or the name is wrong ({reason})",
            url=url,
            hint="check the internet connection; without internet use --mirror (an internal server or "
            "a file:// folder) or copy the files into the models folder",
        )
    if isinstance(reason, ssl.SSLError):
        return NetworkError(
            f"secure connection to {host} failed: {reason}",
            url=url,
            hint="a proxy or an outdated certificate store may intercept HTTPS; set SSL_CERT_FILE",
        )
    if isinstance(reason, ConnectionRefusedError):
        return NetworkError(f"{host} refused the connection", url=url, hint="is the server (mirror) running?")
    if isinstance(reason, (ConnectionError, http.client.HTTPException)):
        return _Retry(ConnectionDropped(f"connection to {host} failed: {reason}", url=url), False)
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return NetworkError(
            f"{host} is unreachable: no network ({reason.strerror})",
            url=url,
            hint="check the internet connection, or use --mirror / copy the files by hand",
        )
    return NetworkError(f"cannot reach {host}: {reason}", url=url)


# ------------------------------------------------------------------------------------------ the fetch
@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` produced: the final ``path``, its ``sha256`` (hex), ``size`` in bytes, the
    ``url`` it came from (``None`` when ``reused``), the byte offset it ``resumed_from``, and
    ``reused`` when another job had finished the file while this one waited for the lock."""

    path: Path
    sha256: str
    size: int
    url: str | None
    resumed_from: int = 0
    reused: bool = False


def fetch(
    urls: Sequence[str],
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    cancel: threading.Event | None = None,
    retries: int = 3,
    retry_wait: float = 1.0,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    user_agent: str = USER_AGENT,
) -> FetchResult:
    """Download ``dest`` from the first of ``urls`` that works, verified, atomically.

    ``size`` (bytes), ``sha256`` (64 hex) and ``sha256_prefix`` (leading hex digits, torch.hub
    style) are checked when given. ``timeout`` is the socket timeout in seconds (connect and each
    read). Up to ``retries`` consecutive failed attempts without progress are retried per source
    (``retry_wait`` seconds, doubling) after a dropped connection, a timeout or HTTP 5xx, each one
    resuming with ``Range``. A set ``cancel`` event stops between chunks with
    :class:`DownloadCancelled` (the ``.part`` stays for a later resume).

    An existing ``dest`` is replaced, unless it appeared while this job waited for the lock: that
    one was written by another job and is checked and returned (``reused=True``).
    """
    dest = Path(dest)
    urls = list(dict.fromkeys(urls))
    if not urls:
        raise DownloadError(f"no address to download {dest.name} from")
    sha256 = sha256.lower() if sha256 else None
    sha256_prefix = sha256_prefix.lower() if sha256_prefix else None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"cannot create the folder {dest.parent}: {e.strerror}",
            hint="choose a models folder you can write to (--models-dir or BOOST_DEPTH_MODELS)",
        ) from e

    before = _stat_key(dest)

    def on_wait() -> None:
        if progress is not None:
            progress(Progress("waiting", 0, size))

    with FileLock(lock_path(dest), timeout=lock_timeout, cancel=cancel, on_wait=on_wait):
        after = _stat_key(dest)
        if after is not None and after != before:
            digest = _check_finished(dest, size, sha256, sha256_prefix, cancel, progress)
            if digest is not None:
                return FetchResult(dest, digest, after[1], None, reused=True)
        failures: list[tuple[str, DownloadError]] = []
        for url in urls:
            try:
                return _fetch_one(
                    url, dest, size, sha256, sha256_prefix, progress, timeout, cancel, retries,
                    retry_wait, user_agent,
                )
            except (DownloadCancelled, DiskFullError):
                raise
            except DownloadError as e:
                failures.append((url, e))
        raise _combine(dest, failures)


def _check_finished(dest, size, sha256, prefix, cancel, progress) -> str | None:
    """Hash of ``dest`` when it passes the checks, else ``None``."""
    if size is not None and os.path.getsize(dest) != size:
        return None
    digest = sha256_file(dest, cancel=cancel, progress=progress).hexdigest()
    if sha256 and digest != sha256:
        return None
    if prefix and not digest.startswith(prefix):
        return None
    return digest


def _combine(dest: Path, failures: list[tuple[str, DownloadError]]) -> DownloadError:
    if len(failures) == 1:
        return failures[0][1]
    kinds = {type(e) for _, e in failures}
    cls = kinds.pop() if len(kinds) == 1 else DownloadError
    lines = "\n".join(f"  - {e}" if url in str(e) else f"  - {url}: {e}" for url, e in failures)
    hints = [e.hint for _, e in failures if e.hint]
    err = cls(f"could not download {dest.name} from any of {len(failures)} sources:\n{lines}")
    err.hint = hints[-1] if hints else ""
    return err


def _fetch_one(url, dest, size, sha256, prefix, progress, timeout, cancel, retries, retry_wait, ua):
    part = part_path(dest)
    meta_file = _meta_path(dest)
    failures = 0
    first_offset = None
    while True:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(f"download of {dest.name} cancelled", url=url)
        offset = part.stat().st_size if part.exists() else 0
        meta = _read_meta(dest) if offset else {}
        # Never splice bytes of one source onto bytes of another unless the hash will judge them.
        if offset and (size is not None and offset > size or (not sha256 and meta.get("url") != url)):
            _unlink(part, meta_file)
            offset, meta = 0, {}
        if first_offset is None:
            first_offset = offset
        try:
            if size is not None and offset == size:
                hasher = sha256_file(part, cancel=cancel, progress=progress)
            else:
                hasher = _attempt(url, dest, part, offset, meta, size, progress, timeout, cancel, ua)
            break
        except _Restart:
            _unlink(part, meta_file)
            first_offset = 0
            continue
        except _Retry as r:
            failures = 1 if r.progressed else failures + 1
            if failures > retries:
                err = r.error
                if isinstance(err, DownloadTimeout) and not err.hint:
                    err.hint = (
                        "the server stopped answering; try again later (the download resumes), or use "
                        "another mirror"
                    )
                if isinstance(err, ConnectionDropped) and not err.hint:
                    err.hint = "the connection keeps dropping; run the download again: it resumes"
                raise err from None
            wait = retry_wait * (2 ** max(0, failures - 1))
            if cancel is not None:
                if cancel.wait(wait):
                    raise DownloadCancelled(f"download of {dest.name} cancelled", url=url) from None
            else:
                time.sleep(wait)

    # ---- verify, then move into place
    got = part.stat().st_size
    digest = hasher.hexdigest()
    problem = None
    if size is not None and got != size:
        problem = f"size {got} bytes, expected {size}"
    elif sha256 and digest != sha256:
        problem = f"SHA-256 {digest}, expected {sha256}"
    elif prefix and not digest.startswith(prefix):
        problem = f"SHA-256 {digest} does not start with {prefix}"
    if problem:
        _unlink(part, meta_file)
        raise IntegrityError(
            f"{dest.name} from {url} is not the expected file ({problem}); it was deleted",
            url=url,
            hint="the source serves a different or damaged file; if it is your mirror, replace its copy",
        )
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    try:
        os.replace(part, dest)
    except OSError as e:  # Windows: the old file is open in another program
        raise DownloadError(
            f"cannot put {dest.name} in place: {e.strerror or e}",
            url=url,
            hint=f"close programs using {dest} and run the download again (the verified copy is kept as "
            f"{part.name} and will not be fetched again)",
        ) from e
    _unlink(meta_file)
    if progress is not None:
        progress(Progress("done", got, got, None, 0.0, url, first_offset or 0))
    return FetchResult(dest, digest, got, url, first_offset or 0)


def _attempt(url, dest, part, offset, meta, size, progress, timeout, cancel, ua):
    """One request: append the body to ``part``. Returns the SHA-256 object of the whole part."""
    resp, start, total = _open(url, offset, meta, timeout, ua)
    if resp is None:  # 416 with the part already complete
        return sha256_file(part, cancel=cancel, progress=progress)
    try:
        if size is not None and total is not None and total != size:
            _unlink(part, _meta_path(dest))
            raise IntegrityError(
                f"{url} serves {total} bytes, expected {size}: not the expected file",
                url=url,
                hint="the source serves a different file; if it is your mirror, replace its copy",
            )
        if start == 0 and offset:
            _unlink(part)  # the server sent the whole file again
        need = (total if total is not None else size)
        if need is not None:
            need -= start
            try:
                free = shutil.disk_usage(dest.parent).free
            except OSError:
                free = None
            if free is not None and free < need:
                raise _disk_full(dest, need)
        if start == 0:
            headers = getattr(resp, "headers", {}) or {}
            _write_meta(
                dest,
                {"url": url, "etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"),
                 "total": total},
            )
            hasher = hashlib.sha256()
        else:
            hasher = sha256_file(part, limit=start, cancel=cancel, progress=progress)

        meter = _Meter(progress, url, total, start)
        meter.update(start, final=True)
        done = start
        try:
            f = open(part, "ab" if start else "wb", buffering=0)
        except OSError as e:
            if _is_disk_full(e):
                raise _disk_full(dest, None) from e
            raise DownloadError(
                f"cannot write {part}: {e.strerror}",
                hint="choose a models folder you can write to (--models-dir or BOOST_DEPTH_MODELS)",
            ) from e
        with f:
            while total is None or done < total:
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled(f"download of {dest.name} cancelled at {done} bytes", url=url)
                try:
                    # read1: whatever arrived (at most one socket read), so bytes received before
                    # a stall are kept and progress is reported on slow links too.
                    data = resp.read1(CHUNK_SIZE)
                except (TimeoutError, socket.timeout) as e:
                    raise _Retry(
                        DownloadTimeout(f"{url} sent nothing for {timeout:g} s", url=url), done > start
                    ) from e
                except (ConnectionError, http.client.HTTPException, OSError) as e:
                    raise _Retry(
                        ConnectionDropped(f"connection to {url} dropped at byte {done}: {e}", url=url),
                        done > start,
                    ) from e
                n = len(data)
                if not n:
                    break
                chunk = memoryview(data)
                written = 0
                try:
                    while written < n:
                        written += f.write(chunk[written:]) or 0
                except OSError as e:
                    # Keep the .part consistent with what was hashed: cut any half-written chunk.
                    try:
                        os.ftruncate(f.fileno(), done)
                    except OSError:
                        pass
                    if _is_disk_full(e):
                        raise _disk_full(dest, None if total is None else total - done) from e
                    raise DownloadError(f"cannot write {part}: {e.strerror}") from e
                hasher.update(chunk)
                done += n
                meter.update(done)
        meter.update(done, final=True)
        if total is not None and done < total:
            raise _Retry(
                ConnectionDropped(f"connection to {url} dropped at byte {done} of {total}", url=url),
                done > start,
            )
        return hasher
    finally:
        resp.close()
