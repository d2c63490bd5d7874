"""dptune's compiled CPU kernel: per-example Conv2D kernel gradients without image patches
(source: native/per_example_conv.cc, whose header says what it computes and why).

It is built once per machine with the C++ compiler and TensorFlow's own compile flags, into a
cache folder (`cache_folder()`), and loaded with `tf.load_op_library`. The file name carries a hash of the source, the TensorFlow version, the
compiler flags and the CPU's instruction-set flags, so a changed source, TensorFlow or machine
builds it again; concurrent builds (several workers) each write their own file and rename it
into place. Where there is no compiler or the build fails, `per_example_conv_kernel_grads` is
None and the layerwise path uses TensorFlow's own ops (same numbers, slower); why is in
`unavailable_reason()`. `DPTUNE_NATIVE_OPS=0` turns the kernel off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

SOURCE = Path(__file__).with_name("native") / "per_example_conv.cc"
BUILD_TIMEOUT_SECONDS = 300
OPTIMIZE_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512")

_log = logging.getLogger(__name__)


def cache_folder() -> Path:
    """Where built kernels are kept: $DPTUNE_CACHE/native, else $XDG_CACHE_HOME (default
    ~/.cache)/dptune/native."""
    root = os.environ.get("DPTUNE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dptune"
    return Path(root) / "native"


def _cpu_flags() -> str:
    """The CPU's instruction-set flags (Linux), so that a `-march=native` build is not reused on another CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _build(compiler: str, target: Path) -> None:
    """Compile SOURCE into `target` (atomically: a temporary file renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        command = [compiler, "-shared", "-fPIC", *OPTIMIZE_FLAGS, "-Wno-deprecated-declarations",
                   *tf.sysconfig.get_compile_flags(), str(SOURCE), "-o", partial, *tf.sysconfig.get_link_flags()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            first_error = next((line for line in lines if "error" in line), lines[-1] if lines else "no output")
            raise RuntimeError(f"{Path(compiler).name} failed (exit {done.returncode}): {first_error}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.cache
def _load() -> tuple[Callable | None, str | None]:
    """(the op, None) or (None, why not); built and loaded once per process."""
    if os.environ.get("DPTUNE_NATIVE_OPS", "1") == "0":
        return None, "turned off by DPTUNE_NATIVE_OPS=0"
    compiler = _compiler()
    if compiler is None:
        return None, "no C++ compiler (install g++: apt-get install g++)"
    key = hashlib.sha256("\n".join([
        SOURCE.read_text(), tf.__version__, compiler, *OPTIMIZE_FLAGS, *tf.sysconfig.get_compile_flags(), _cpu_flags(),
    ]).encode()).hexdigest()[:20]
    target = cache_folder() / f"per_example_conv-{key}.so"
    try:
        if not target.exists():
            _log.info("building dptune's per-example Conv2D kernel into %s (once per machine)", target)
            _build(compiler, target)
        return tf.load_op_library(str(target)).dptune_per_example_conv2d_kernel_grad, None
    except (OSError, RuntimeError, subprocess.SubprocessError, tf.errors.OpError) as error:
        reason = f"could not build or load {target.name}: {error}"
        _log.warning("dptune's per-example Conv2D kernel is unavailable (%s); using TensorFlow's ops", reason)
        return None, reason


def per_example_conv_kernel_grads() -> Callable | None:
    """The op `(input [P, H, W, Ci], out_grad [P, Ho, Wo, Co], kernel_size, strides, dilations,
    padding [rows, columns of zeros before the input]) -> (per-example kernel gradients
    [P, kh, kw, Ci, Co], their squared L2 norms [P])`, float32, CPU only; None where it is
    unavailable (built on the first call, which can take a few seconds)."""
    return _load()[0]


def unavailable_reason() -> str | None:
    """Why `per_example_conv_kernel_grads()` is None; None when it is available."""
    return _load()[1]
