"""Compiled Winograd transforms: ``native/winograd_transforms.c`` built with the system C compiler, used via ctypes.

The torch form of a Winograd band (``winograd.convolve_tiles``) gathers the tiles into a copy, transforms them with
a GEMM against kron(B^T, B^T) (K = 36: memory-bound) and places the output tiles with another GEMM and a strided
copy. Here both transforms are one pass each, straight from the channels-last input (zero padding read as zeros,
no padded copy) into the transformed tensor, and from the products straight into the output with the bias: on this
project's CPU a 256 -> 256 channel band of 48 x 48 tiles transforms in ~10 ms instead of ~40.

    kernels = native_kernels.winograd_kernels()      # None when no compiler is found (see unavailable_reason())
    v = kernels.input_transform(nhwc, top, left, rows, cols, alpha)   # (a*a, P, c), tile-major
    m = kernels.multiply(v, u)                                        # (a*a, P, k): the a*a products V[t] U[t]
    kernels.output_transform(m, rows, cols, target, bias)             # target (n, <= m rows, <= m cols, k)

V and M are tile-major: a tile's a*a rows of channels lie together (strides (c, a*a*c, 1)), so that the a*a
products are one grouped 1x1 convolution of oneDNN (groups a*a, channels-last) instead of a batched GEMM of the
BLAS: on this project's AMD CPU torch's MKL runs ``bmm`` at ~108 GFLOP/s a core (AVX2 code paths), oneDNN the same
products at 132-158 (MiDaS v2's Winograd layers at 768², one thread: see ``multiply``). ``u`` must then be stored
k-major (:meth:`WinogradKernels.gemm_layout`, a strided view of (a*a, k, c)); any other u or a torch without oneDNN
takes ``torch.bmm``.

The library is compiled once per source / compiler / flags into a per-user cache folder
(``$BOOST_DEPTH_CACHE`` if set) and loaded from there afterwards; building takes about a second. Without a C
compiler (``$CC``, else ``cc``, ``gcc`` or ``clang`` on PATH) the Winograd layers keep the torch form: same
numbers to float32 rounding, somewhat slower. The work of each call is split over ``torch.get_num_threads()``
threads (ctypes releases the GIL while a C function runs).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..onednn import has_pointwise_convolution

SOURCE = Path(__file__).resolve().parent / "winograd_transforms.c"
ABI = 3  # boost_depth_kernels_abi() of the source
ENV_CACHE = "BOOST_DEPTH_CACHE"
ALPHAS = (5, 6, 8)  # input tile sides compiled: F(4x4, 2x2), F(4x4, 3x3) and F(6x6, 3x3)
TILES = {5: 4, 6: 4, 8: 6}  # output tile side m of each

_unavailable: str | None = None
_lock = threading.Lock()


def cache_dir() -> Path:
    """``$BOOST_DEPTH_CACHE``, else the platform's per-user cache folder + ``boost_depth``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "boost_depth"


def find_compiler() -> str | None:
    """``$CC`` if set, else the first of cc, gcc, clang on PATH; None when there is none."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def compile_flags() -> list[str]:
    """Optimisation flags: AVX2 + FMA where torch detected them on this CPU, the compiler's defaults otherwise."""
    flags = ["-O3", "-std=c99", "-shared"]
    if sys.platform != "win32":
        flags.append("-fPIC")
    if platform.machine().lower() in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() in (
            "AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def _library_path(compiler: str, flags: list[str]) -> Path:
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    key = hashlib.sha256("\n".join([SOURCE.read_text(), compiler, version, *flags]).encode()).hexdigest()[:16]
    suffix = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")
    return cache_dir() / f"winograd_transforms-{key}{suffix}"


def build(compiler: str, flags: list[str]) -> Path:
    """The compiled library (built now unless cached); raises RuntimeError with the compiler's message on failure."""
    target = _library_path(compiler, flags)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=target.stem, suffix=target.suffix + ".part", dir=target.parent)
    os.close(fd)
    try:
        returncode, stderr = _compile([compiler, *flags, "-o", partial, str(SOURCE)], timeout=300)
        if returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE.name}: {stderr.strip()[:2000]}")
        os.replace(partial, target)  # complete or absent: concurrent builders each move a whole file
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _compile(command: list[str], timeout: float) -> tuple[int, str]:
    """Run the compiler in its own process group; on any exception (a cancel's KeyboardInterrupt, a timeout) the
    whole group is killed -- the driver and its cc1 / as / ld children -- and waited for, so none outlives us."""
    kwargs = {"start_new_session": True} if os.name == "posix" else {}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        _, stderr = process.communicate(timeout=timeout)
        return process.returncode, stderr or ""
    except BaseException:
        _kill_group(process)
        raise


def _kill_group(process: subprocess.Popen) -> None:
    import signal

    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:
        pass
    process.wait()
    if os.name == "posix":  # grandchildren re-parented away from us still share the group: wait until it is empty
        import time

        for _ in range(200):
            try:
                os.killpg(process.pid, 0)
            except OSError:
                break
            time.sleep(0.005)


class WinogradKernels:
    """The loaded library; every array is float32 with channels innermost (see the C file for the layouts)."""

    def __init__(self, library: ctypes.CDLL, path: Path):
        self.path = path
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        if library.boost_depth_kernels_abi() != ABI:
            raise RuntimeError(f"{path} has ABI {library.boost_depth_kernels_abi()}, expected {ABI}")
        self._input, self._output = {}, {}
        for alpha in ALPHAS:
            fn = getattr(library, f"input_transform_{alpha}")
            fn.argtypes, fn.restype = [ptr] + [i64] * 11 + [ptr] + [i64] * 4, None
            self._input[alpha] = fn
            fn = getattr(library, f"output_transform_{alpha}")
            fn.argtypes, fn.restype = [ptr] + [i64] * 5 + [ptr, ptr] + [i64] * 10, None
            self._output[alpha] = fn
        self._pool: ThreadPoolExecutor | None = None
        self._workers = 0

    def _run(self, fn, tiles: int, *args) -> None:
        """fn(*args, p0, p1) over [0, tiles), split between torch.get_num_threads() threads (this one included)."""
        threads = max(1, min(torch.get_num_threads(), tiles // 16 or 1))
        if threads > 1 and self._workers < threads - 1:
            with _lock:
                if self._pool is not None:
                    self._pool.shutdown()
                self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="boost-depth-winograd")
                self._workers = threads - 1
        bounds = [tiles * t // threads for t in range(threads + 1)]
        futures = [self._pool.submit(fn, *args, bounds[t], bounds[t + 1]) for t in range(1, threads)]
        fn(*args, bounds[0], bounds[1])
        for future in futures:
            future.result()

    @staticmethod
    def transformed_buffer(alpha: int, tiles: int, channels: int, like: torch.Tensor) -> torch.Tensor:
        """An empty (a*a, tiles, channels) float32 tensor, tile-major (strides (channels, a*a*channels, 1)): V or M,
        the channels-last input or output of the grouped 1x1 convolution of :meth:`multiply`."""
        aa = alpha * alpha
        return like.new_empty(aa * tiles * channels, dtype=torch.float32).as_strided(
            (aa, tiles, channels), (channels, aa * channels, 1))

    @staticmethod
    def gemm_layout(u: torch.Tensor) -> torch.Tensor:
        """Transformed weights u (a*a, c, k) stored k-major: the same (a*a, c, k) values as a view of a contiguous
        (a*a, k, c) tensor, i.e. the (a*a*k, c, 1, 1) weight of :meth:`multiply`'s grouped convolution."""
        return u.transpose(1, 2).contiguous().transpose(1, 2)

    def multiply(self, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """M = the a*a products V[t] @ U[t]: v (a*a, P, c) from :meth:`transformed_buffer`, u (a*a, c, k) ->
        (a*a, P, k) float32 (tile-major from oneDNN; whatever ``torch.bmm`` gives otherwise).

        With oneDNN and u in :meth:`gemm_layout`, one grouped 1x1 convolution (a*a groups) over V seen as a
        (1, a*a*c, P, 1) channels-last map; measured at one thread on this project's AMD CPU against ``torch.bmm``:
        36 x (2304 x 256 @ 256 x 256) 108 -> 143 GFLOP/s, 64 x (1024 x 256 @ 256 x 256) 108 -> 132, 64 x
        (576 x 512 @ 512 x 256) 110 -> 158. Same products, float32 rounding only.
        """
        aa, tiles, c = v.shape
        k = u.shape[2]
        weight = u.transpose(1, 2)  # (a*a, k, c)
        if (not has_pointwise_convolution() or v.stride() != (c, aa * c, 1) or not weight.is_contiguous()
                or u.dtype != torch.float32 or v.dtype != torch.float32):
            return torch.bmm(v, u)
        x = v.as_strided((1, aa * c, tiles, 1), (aa * c * tiles, 1, aa * c, aa * c))
        y = torch.ops.mkldnn._convolution_pointwise(x, weight.reshape(aa * k, c, 1, 1), None, [0, 0], [1, 1],
                                                    [1, 1], aa, "none", [], "")
        if y.stride(1) != 1 or y.stride(2) != aa * k:
            y = y.contiguous(memory_format=torch.channels_last)
        return y.as_strided((aa, tiles, k), (k, aa * k, 1))

    def input_transform(self, nhwc: torch.Tensor, top: int, left: int, rows: int, cols: int, alpha: int,
                        step: int = 1, out: torch.Tensor | None = None, channel_offset: int = 0) -> torch.Tensor:
        """V (a*a, n*rows*cols, c) of the a x a tiles of ``nhwc`` (n, h, w, c), float32, unit channel stride.

        Tile (r, q) covers the virtual pixels m r + [0, a) x m q + [0, a) (m = TILES[a]); virtual pixel (y, x) is
        map pixel (top + step y, left + step x), zero outside the map (step 2: one polyphase component). Written
        into ``out[:, :, channel_offset:channel_offset + c]`` when given (a buffer of :meth:`transformed_buffer`),
        else into a new V of c channels.
        """
        n, h, w, c = nhwc.shape
        if nhwc.dtype != torch.float32 or nhwc.stride(3) != 1 or nhwc.device.type != "cpu":
            raise ValueError("input_transform needs a float32 CPU tensor with contiguous channels")
        tiles = n * rows * cols
        v = self.transformed_buffer(alpha, tiles, c, nhwc) if out is None else out
        if v.shape[:2] != (alpha * alpha, tiles) or v.stride(2) != 1 or channel_offset + c > v.shape[2]:
            raise ValueError(f"V of shape {tuple(v.shape)} cannot take {c} channels at {channel_offset}")
        sn, sh, sw, _ = nhwc.stride()
        self._run(self._input[alpha], tiles, nhwc.data_ptr(), sn, sh, sw, h, w, top, left, step, c, rows, cols,
                  v.data_ptr() + 4 * channel_offset, v.stride(0), v.stride(1))
        return v

    def output_transform(self, m: torch.Tensor, rows: int, cols: int, target: torch.Tensor,
                         bias: torch.Tensor | None, top: int = 0, left: int = 0, step: int = 1,
                         channel_offset: int = 0, channels: int | None = None) -> None:
        """Writes A^T M A + bias of every tile into ``target`` (n, height, width, k), float32, unit channel stride.

        Reads M's channels [channel_offset, channel_offset + k) (k = ``channels`` or all); output pixel (i, j) of
        tile (r, q) goes to target pixel (top + step (m r + i), left + step (m q + j)) when that is inside target
        (m = TILES[a], a = sqrt(M.shape[0])).
        ``bias``: (k,) for those channels, or None.
        """
        alpha = round(m.shape[0] ** 0.5)
        tiles = m.shape[1]
        k = m.shape[2] - channel_offset if channels is None else channels
        if m.stride(2) != 1 or target.stride(3) != 1 or target.dtype != torch.float32 or target.shape[3] != k:
            raise ValueError("output_transform needs M and a float32 target with contiguous channels, k of them")
        if bias is not None:
            bias = bias.detach().to(torch.float32).contiguous()
        on, oh, ow, _ = target.stride()
        self._run(self._output[alpha], tiles, m.data_ptr() + 4 * channel_offset, m.stride(0), m.stride(1), k, rows,
                  cols, None if bias is None else bias.data_ptr(), target.data_ptr(), on, oh, ow, target.shape[1],
                  target.shape[2], top, left, step)


@functools.lru_cache(maxsize=1)
def winograd_kernels() -> WinogradKernels | None:
    """The compiled transforms (built at the first call of the process), or None: see :func:`unavailable_reason`."""
    global _unavailable
    compiler = find_compiler()
    if compiler is None:
        _unavailable = "no C compiler found (set CC, or install gcc or clang)"
        return None
    try:
        path = build(compiler, compile_flags())
        return WinogradKernels(ctypes.CDLL(str(path)), path)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
        _unavailable = str(exc)
        return None


def unavailable_reason() -> str | None:
    """Why :func:`winograd_kernels` returned None (None when it has not, or has not been called)."""
    return _unavailable


__all__ = ["WinogradKernels", "build", "cache_dir", "compile_flags", "find_compiler", "unavailable_reason",
           "winograd_kernels"]
