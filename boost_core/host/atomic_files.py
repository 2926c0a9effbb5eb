"""All-or-nothing replacement of a group of files (standard library only: the Blender side imports it too).

    replace_all([(temp, target), ...])

Each temp (already complete, in its target's folder) is renamed over its target in turn. A file that is replaced
is first kept under a hidden backup name (a hard link, else a rename); if any step fails, or a KeyboardInterrupt
(a cancel) arrives, the renames already done are undone -- replaced files come back with their content and mode,
new ones are removed -- and every temp is removed. New files get the umask's mode (0666 & ~umask; mkstemp's
temps are 0600); a replaced file keeps its mode.
"""

from __future__ import annotations

import os
from pathlib import Path


def file_identity(path) -> tuple:
    """A key equal for two paths naming the same file: (device, inode) when it exists, else the resolved path
    (so an output that is also an input is recognised under any spelling, hard links included)."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(str(Path(path).resolve())))


def sha256_file(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def umask() -> int:
    """The process's umask (read by setting and restoring it: call from the main thread)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_all(pairs) -> None:
    pairs = [(Path(temp), Path(target)) for temp, target in pairs]
    pending = {temp for temp, _ in pairs}
    done: list[tuple[Path, Path | None]] = []
    try:
        for temp, target in pairs:
            backup = _backup(target)
            try:
                os.chmod(temp, (os.stat(backup).st_mode & 0o7777) if backup else 0o666 & ~umask())
                os.replace(temp, target)
            except BaseException:
                if backup is not None:
                    _restore(backup, target)
                raise
            pending.discard(temp)
            done.append((target, backup))
    except BaseException:
        for target, backup in reversed(done):
            if backup is not None:
                _restore(backup, target)
            else:
                unlink_quietly(target)
        for temp in pending:
            unlink_quietly(temp)
        raise
    for _, backup in done:
        if backup is not None:
            unlink_quietly(backup)


def _backup(target: Path) -> Path | None:
    """A hard link (else a rename) of the regular file at ``target`` under a hidden name beside it, or None."""
    if not os.path.isfile(target) or os.path.islink(target):
        return None
    for attempt in range(100):
        name = target.parent / f".{target.name}.{os.getpid()}.{attempt}.replaced"
        if os.path.lexists(name):
            continue
        try:
            os.link(target, name)
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system (e.g. FAT): move it aside instead
            os.rename(target, name)
        return name
    raise FileExistsError(f"no free backup name beside {target}")


def _restore(backup: Path, target: Path) -> None:
    try:
        os.replace(backup, target)
    except OSError:
        pass


def unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
