"""``python -m boost_core weights ...``: list, download, verify and locate model weight files.

Commands::

    weights list [--json] [--full]      name, file, size, licence, status, location of every file
    weights download NAME [NAME ...]    fetch, verify and place files (resumes interrupted downloads)
    weights verify [NAME ...]           hash files (all present ones when no NAME is given)
    weights path [NAME]                 the models folder, or the path of NAME's file

Options (before or after the command): ``--models-dir DIR`` (default ``$BOOST_DEPTH_MODELS``, else
the per-user data folder), ``--mirror URL`` (default ``$BOOST_DEPTH_MIRROR``: replaces scheme and
host of every official address), ``--yes`` (accept licences without asking), ``--progress
text|json|none`` and ``--timeout SECONDS``.

Exit status: 0 success; 1 a download failed, a file is corrupt (``verify``, ``list --full``), or
``path NAME`` names a missing file; 2 bad usage or licence not accepted; 3 ``verify NAME...``
found a named file missing (and none corrupt). ``verify`` without names lists missing files but
they do not change the exit status. 130 interrupted (Ctrl-C; a download resumes next time).

``--progress json`` prints one JSON object per line on stdout (human text goes to stderr)::

    {"event": "start", "name": "merge_net", "file": "latest_net_G.pth", "size": 318268048,
     "path": "...", "sources": ["https://..."]}
    {"event": "stage", "name": "merge_net", "stage": "waiting" | "verifying" | "downloading"}
    {"event": "progress", "name": "merge_net", "done": 1048576, "of": 318268048, "fraction": 0.0033,
     "rate": 5.2e6, "eta": 61.0}
    {"event": "done", "name": "merge_net", "path": "...", "status": "ok", "sha256": "..."}
    {"event": "error", "name": "merge_net", "message": "...", "hint": "..."}
    {"event": "summary", "ok": 1, "failed": 0}

(each object is on one line; ``rate`` is bytes/s, ``eta`` seconds, ``of``/``fraction``/``rate``/``eta``
may be null). ``verify`` emits ``stage``/``progress`` while hashing, then one ``verified`` object per
file (name, path, status, detail, sha256) and a ``summary`` with ok/corrupt/missing counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from ..weights import catalogue
from ..weights import store as W
from ..weights.download import DownloadError, Progress

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING = 3
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of sys.exit so main() returns a code
        raise _UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")


def _common(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--models-dir", metavar="DIR", default=d(None),
                   help="models folder (default: $BOOST_DEPTH_MODELS, else the per-user data folder)")
    p.add_argument("--mirror", metavar="URL", default=d(None),
                   help="base URL replacing scheme and host of every official address "
                   "(default: $BOOST_DEPTH_MIRROR); file:///folder works too")
    p.add_argument("--yes", "-y", action="store_true", default=d(False),
                   help="accept the licences without asking (needed when not run from a terminal)")
    p.add_argument("--progress", choices=("text", "json", "none"), default=d("text"),
                   help="progress on stderr as text (default), as JSON lines on stdout, or none")
    p.add_argument("--timeout", type=float, metavar="SECONDS", default=d(30.0),
                   help="network timeout per connect/read, seconds (default 30)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m boost_core weights",
        description="List, download and verify the model weight files of Boost Depth.",
        epilog="Exit status: 0 ok; 1 download failed / corrupt file / path of a missing file; 2 usage or "
        "licence not accepted; 3 verify: a named file is missing; 130 interrupted.",
    )
    _common(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    s = sub.add_parser("list", help="show every file: name, file, size, licence, status, location")
    s.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    s.add_argument("--full", action="store_true",
                   help="hash every present file (slow) instead of the cached check")
    _common(s, suppress=True)
    s = sub.add_parser("download", help="download, verify and place files")
    s.add_argument("names", nargs="+", metavar="NAME", help="registry names (see list)")
    _common(s, suppress=True)
    s = sub.add_parser("verify", help="hash files and report ok / corrupt / missing")
    s.add_argument("names", nargs="*", metavar="NAME", help="registry names (default: all)")
    _common(s, suppress=True)
    s = sub.add_parser("path", help="print the models folder, or the path of NAME's file")
    s.add_argument("name", nargs="?", metavar="NAME")
    _common(s, suppress=True)
    return p


class _Out:
    """Where things go: JSON events on stdout, human text on stderr."""

    def __init__(self, mode: str, stdout: TextIO, stderr: TextIO):
        self.mode = mode
        self.stdout = stdout
        self.stderr = stderr
        self.tty = bool(getattr(stderr, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._line_open = False

    def event(self, **fields) -> None:
        if self.mode == "json":
            with self._lock:
                self.stdout.write(json.dumps(fields) + "\n")
                self.stdout.flush()

    def say(self, text: str) -> None:
        with self._lock:
            if self._line_open:
                self.stderr.write("\n")
                self._line_open = False
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def status_line(self, text: str) -> None:
        with self._lock:
            if self.tty:
                self.stderr.write("\r" + text.ljust(78))
                self._line_open = True
            else:
                self.stderr.write(text + "\n")
            self.stderr.flush()


def _fmt_eta(eta: float | None) -> str:
    if eta is None:
        return "--:--"
    eta = int(eta)
    h, rem = divmod(eta, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _progress_printer(out: _Out, name: str):
    """A download progress callback printing ``name``'s progress the way ``out`` wants."""
    state = {"last_text": 0.0, "last_fraction": -1.0, "stage": None}

    def cb(p: Progress) -> None:
        if p.state not in ("waiting", "verifying", "downloading"):
            return
        if state["stage"] != p.state:
            state["stage"] = p.state
            state["last_fraction"] = -1.0
            out.event(event="stage", name=name, stage=p.state)
            if out.mode == "text" and p.state != "downloading":
                out.say(
                    f"{name}: waiting for another job downloading the same file…" if p.state == "waiting"
                    else f"{name}: verifying (SHA-256)…"
                )
        if p.state == "waiting":
            return
        frac = p.fraction
        out.event(
            event="progress", name=name, done=p.done, of=p.total,
            fraction=None if frac is None else round(frac, 4),
            rate=None if p.rate is None else round(p.rate, 1),
            eta=None if p.eta is None else round(p.eta, 1),
        )
        if out.mode != "text":
            return
        now = time.monotonic()
        if out.tty:
            if now - state["last_text"] < 0.2 and frac != 1.0:
                return
        else:  # logs: one line per 10 %
            step = -1.0 if frac is None else int(frac * 10) / 10
            if step <= state["last_fraction"] and now - state["last_text"] < 30:
                return
            state["last_fraction"] = step
        state["last_text"] = now
        pct = "" if frac is None else f"{100 * frac:5.1f}% "
        if p.state == "verifying":
            out.status_line(f"{name}: checking {pct}{W.format_size(p.done)} of {W.format_size(p.total)}")
            return
        rate = "" if p.rate is None else f"{W.format_size(int(p.rate))}/s "
        out.status_line(
            f"{name}: {pct}{W.format_size(p.done)} of {W.format_size(p.total)} {rate}ETA {_fmt_eta(p.eta)}"
        )

    return cb


def _resolve(names: Sequence[str], registry: Mapping[str, catalogue.WeightFile]) -> list[catalogue.WeightFile]:
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise _UsageError(
            f"unknown model weights: {', '.join(unknown)}; known names: {', '.join(registry)}"
        )
    return [registry[n] for n in dict.fromkeys(names)]


# ------------------------------------------------------------------------------------------ commands
def _cmd_list(args, registry, folder, out: _Out) -> int:
    rows = []
    corrupt = False
    for wf in registry.values():
        rep = W.inspect(wf, folder, full_check=args.full)
        corrupt |= rep.status == "corrupt"
        rows.append((wf, rep))
    if args.json:
        data = [
            {
                "name": wf.name, "title": wf.title, "file": wf.filename, "size": wf.size,
                "licence": wf.licence, "licence_note": wf.licence_note,
                "requires_acceptance": wf.requires_acceptance, "manual": wf.manual,
                "status": rep.status, "detail": rep.detail, "path": str(rep.path),
                "partial": rep.partial, "urls": list(wf.urls), "networks": list(wf.networks),
            }
            for wf, rep in rows
        ]
        out.stdout.write(json.dumps(data, indent=2) + "\n")
        return EXIT_FAILED if (args.full and corrupt) else EXIT_OK
    header = ("NAME", "FILE", "SIZE", "LICENCE", "STATUS", "LOCATION")
    table = [header]
    for wf, rep in rows:
        st = rep.status
        if st == "missing" and rep.partial:
            st = f"missing ({W.format_size(rep.partial)} partial)"
        if wf.manual and rep.status == "missing":
            st = "missing (manual download)"
        table.append((wf.name, wf.filename, W.format_size(wf.size), wf.licence, st, str(rep.path)))
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    out.stdout.write(f"Models folder: {folder}\n")
    for r in table:
        out.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] + "\n")
    notes = [rep for _, rep in rows if rep.status == "corrupt"]
    for rep in notes:
        out.stdout.write(f"! {rep.name}: {rep.detail}\n")
    return EXIT_FAILED if (args.full and corrupt) else EXIT_OK


def _accept_licences(targets, folder, args, out: _Out, stdin: TextIO) -> bool:
    need = [wf for wf in targets if wf.requires_acceptance and not wf.manual
            and W.inspect(wf, folder).status != "ok"]
    for wf in targets:
        if not wf.manual:
            out.say(f"{wf.name}: licence {wf.licence}. {wf.licence_note}")
    if not need or args.yes:
        return True
    names = ", ".join(wf.name for wf in need)
    interactive = bool(getattr(stdin, "isatty", lambda: False)())
    if not interactive:
        msg = (f"the licence of {names} restricts use ({'; '.join(wf.licence for wf in need)}); "
               "read it above and re-run with --yes to accept it")
        out.event(event="error", name=None, message=msg, hint="add --yes to accept the licence")
        out.say(f"error: {msg}")
        return False
    with out._lock:
        out.stderr.write(f"Accept the licence of {names} and download? [y/N] ")
        out.stderr.flush()
    answer = stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return True
    out.say("not accepted; nothing downloaded")
    return False


def _cmd_download(args, registry, folder, out: _Out, stdin: TextIO, cancel: threading.Event) -> int:
    targets = _resolve(args.names, registry)
    if not _accept_licences(targets, folder, args, out, stdin):
        return EXIT_USAGE
    mirror = args.mirror if args.mirror is not None else W.default_mirror()
    ok = failed = 0
    for wf in targets:
        path = folder / wf.filename
        try:
            sources = list(W.source_urls(wf, mirror))
        except ValueError as e:
            raise _UsageError(str(e)) from None
        out.event(event="start", name=wf.name, file=wf.filename, size=wf.size, path=str(path),
                  sources=sources)
        if out.mode == "text":
            out.say(f"{wf.name}: {wf.filename} ({W.format_size(wf.size)}) -> {path}")
        try:
            W.download(wf, folder, mirror=mirror, progress=_progress_printer(out, wf.name),
                       timeout=args.timeout, cancel=cancel)
        except DownloadError as e:
            failed += 1
            out.event(event="error", name=wf.name, message=str(e), hint=e.hint)
            out.say(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""))
            continue
        rep = W.inspect(wf, folder)
        ok += 1
        out.event(event="done", name=wf.name, path=str(path), status=rep.status, sha256=rep.sha256)
        out.say(f"{wf.name}: {rep.status} ({rep.detail}) {path}")
    out.event(event="summary", ok=ok, failed=failed)
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_verify(args, registry, folder, out: _Out, cancel: threading.Event) -> int:
    named = bool(args.names)
    targets = _resolve(args.names, registry) if named else list(registry.values())
    corrupt = missing = 0
    for wf in targets:
        rep = W.inspect(wf, folder, full_check=True, progress=_progress_printer(out, wf.name), cancel=cancel)
        if rep.status == "corrupt":
            corrupt += 1
        elif rep.status == "missing":
            missing += 1
        out.event(event="verified", name=wf.name, path=str(rep.path), status=rep.status, detail=rep.detail,
                  sha256=rep.sha256)
        if out.mode != "json":
            out.stdout.write(f"{wf.name:<26} {rep.status:<10} {rep.detail}  {rep.path}\n")
        if rep.status == "corrupt":
            out.say(f"{wf.name}: corrupt. Get it again with:\n    "
                    f"{W.DOWNLOAD_COMMAND} download {wf.name} --models-dir {folder}")
    out.event(event="summary", ok=len(targets) - corrupt - missing, corrupt=corrupt, missing=missing)
    if corrupt:
        return EXIT_FAILED
    if named and missing:
        return EXIT_MISSING
    return EXIT_OK


def _cmd_path(args, registry, folder, out: _Out) -> int:
    if args.name is None:
        out.stdout.write(f"{folder}\n")
        return EXIT_OK
    (wf,) = _resolve([args.name], registry)
    path = folder / wf.filename
    out.stdout.write(f"{path}\n")
    if not path.exists():
        out.say(f"{wf.name}: {path} does not exist yet\n" + W.instructions(wf, folder))
        return EXIT_FAILED
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    registry: Mapping[str, catalogue.WeightFile] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Run ``weights`` with ``argv`` (without the leading ``weights``); returns the exit status.

    ``registry`` replaces :data:`boost_core.weights.catalogue.REGISTRY` (tests, custom deployments); the
    streams default to ``sys.stdin/stdout/stderr``; ``cancel`` stops a download between chunks.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    registry = catalogue.registry() if registry is None else registry
    cancel = cancel or threading.Event()
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            raise _UsageError(build_parser().format_help().rstrip())
        folder = W.models_dir(args.models_dir)
        out = _Out(args.progress, stdout, stderr)
        if args.command == "list":
            return _cmd_list(args, registry, folder, out)
        if args.command == "download":
            return _cmd_download(args, registry, folder, out, stdin, cancel)
        if args.command == "verify":
            return _cmd_verify(args, registry, folder, out, cancel)
        return _cmd_path(args, registry, folder, out)
    except _UsageError as e:
        stderr.write(f"{e}\n")
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_OK
    except KeyboardInterrupt:
        cancel.set()
        stderr.write("\ninterrupted; run the same command again to resume\n")
        return EXIT_INTERRUPTED
    except DownloadError as e:  # e.g. a verify cancelled, a lock problem
        stderr.write(f"error: {e}\n" + (f"hint: {e.hint}\n" if e.hint else ""))
        return EXIT_FAILED
    except OSError as e:
        stderr.write(f"error: {e}\n")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover - python -m boost_core.cli.weights
    sys.exit(main())
