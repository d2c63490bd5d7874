"""The hostile-input battery of issue 11: files and command lines built to exhaust memory or
time, or to reach a traceback, each run as a real `dptune` process (or a data-loading process)
whose exit code, stderr, peak memory (ru_maxrss), wall time and writes are measured.

`python tests/reliability_tests/hostile.py` prints the table (case / clean error / crash /
hang / memory / written); tests/reliability_tests/test_hostile_inputs.py asserts every row.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(os.environ.get("DPTUNE_SRC", REPO))
"""Where the dptune package under test is (DPTUNE_SRC: e.g. an unpacked older commit, for a before/after table)."""
PYTHON = sys.executable
TIMEOUT_S = 120
MEMORY_LIMIT_BYTES = 12 * 1024**3
"""RLIMIT_AS of every case (TensorFlow reserves several GiB of address space at import)."""
MAX_RSS_MIB = 1500
"""The peak resident memory a refused input may cost (a TensorFlow import is ~700 MiB)."""

LOAD_DATA = (
    "import sys\n"
    "from dptune.errors import DPTuneError\n"
    "from dptune.data import load_dataset\n"
    "try:\n"
    "    load_dataset(sys.argv[1])\n"
    "except DPTuneError as error:\n"
    "    print(f'error: {error}', file=sys.stderr); sys.exit(2)\n"
    "print('loaded')\n"
)


@dataclass
class Outcome:
    case: str
    exit_code: int | None
    stderr: str
    seconds: float
    max_rss_mib: float
    written: list[str]

    @property
    def hang(self) -> bool:
        return self.exit_code is None

    @property
    def crash(self) -> bool:
        return not self.hang and ("Traceback" in self.stderr or self.exit_code not in (0, 2))

    @property
    def clean_error(self) -> bool:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return (self.exit_code == 2 and not self.crash and any(line.startswith("error: ") for line in lines)
                and len(self.stderr) < 4000)


# ---------------------------------------------------------------------------- file builders
def billion_laughs(folder: Path, kind: str = "search") -> Path:
    """A valid search (or run) YAML whose `mode` (or `optimizer`) is 2 KB of nested anchors:
    9^9 "lol"s once the aliases are expanded (what a message quoting the value would print)."""
    base = search_yaml(folder) if kind == "search" else run_yaml(folder)
    key = "mode" if kind == "search" else "optimizer"
    values = yaml.safe_load(base.read_text())
    del values[key]
    lines = [yaml.safe_dump(values).rstrip(), f"{key}:", '- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        lines.append(f"- &{name} [" + ",".join([f"*{'abcdefghi'[i]}"] * 9) + "]")
    path = folder / f"laughs-{kind}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def non_utf8_yaml(folder: Path) -> Path:
    path = folder / "latin1.yaml"
    path.write_bytes("mode: budgeted\nstudy_name: caf\xe9\n".encode("latin-1") + b"\xff\xfe\x00")
    return path


def deep_yaml(folder: Path) -> Path:
    path = folder / "deep.yaml"
    path.write_text("mode: " + "[" * 50_000 + "]" * 50_000 + "\n")
    return path


def deep_yaml_blocks(folder: Path) -> Path:
    path = folder / "deep-blocks.yaml"
    path.write_text("mode:\n" + "".join(" " * i + "- \n" for i in range(1, 3000)))
    return path


def search_yaml(folder: Path, **changes) -> Path:
    values = {"mode": "budgeted", "dataset": {"builtin": "digits"}, "model": {"kind": "mlp", "hidden_units": [8]},
              "target_epsilon": 3.0, "n_trials": 2, "ranges": {"epochs": 1, "batch_size": 64},
              "workspace": str(folder / "ws")}
    values.update(changes)
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run_yaml(folder: Path, **changes) -> Path:
    values = {"l2_norm_clip": 1.0, "noise_multiplier": 1.1, "num_microbatches": 32, "learning_rate": 0.1,
              "batch_size": 32, "epochs": 1, "optimizer": "sgd", "sampling": "poisson", "seed": 0,
              "delta": 1e-4, "dataset": {"builtin": "digits"}, "model": {"kind": "logreg"}}
    values.update(changes)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def wide_csv(folder: Path) -> Path:
    path = folder / "wide.csv"
    columns = 200_000
    header = ",".join(["label"] + [f"c{i}" for i in range(columns - 1)])
    row = ",".join(["1"] * columns)
    path.write_text(header + "\n" + row + "\n" + row + "\n")
    return path


def wide_csv_same_names(folder: Path) -> Path:
    path = folder / "dup.csv"
    columns = 200_000
    header = ",".join(["label"] + ["x"] * (columns - 1))
    row = ",".join(["1"] * columns)
    path.write_text(header + "\n" + row + "\n" + row + "\n")
    return path


def many_same_names_csv(folder: Path) -> Path:
    """4,000 columns all named x (under the column limit): the duplicate-name check must be linear."""
    path = folder / "same-names.csv"
    columns = 4_000
    header = ",".join(["label"] + ["x"] * (columns - 1))
    rows = "".join(",".join([str(i % 2)] + ["1"] * (columns - 1)) + "\n" for i in range(4))
    path.write_text(header + "\n" + rows)
    return path


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def npz_bomb(folder: Path) -> Path:
    """A compressed NPZ whose x is 2 GB of zeros (declared honestly, 2 MB on disk)."""
    path = folder / "bomb.npz"
    n = 2_000_000_000 // 8 // 100
    x_header = _npy_header((n, 100))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as handle:
            handle.write(x_header)
            block = bytes(8 * 100 * 10_000)
            for _ in range(n // 10_000):
                handle.write(block)
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(n, dtype=np.int8))
        archive.writestr("y.npy", buffer.getvalue())
    return path


def npz_forged_shape(folder: Path) -> Path:
    """An NPZ whose stored members declare a huge size in the ZIP directory and in the header."""
    path = folder / "forged.npz"
    x = _npy_header((10**6, 10**6)) + bytes(64)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("x.npy", x)
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(4, dtype=np.int8))
        archive.writestr("y.npy", buffer.getvalue())
    data = bytearray(path.read_bytes())
    # patch the declared uncompressed size of x.npy (local header and central directory)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + offset:at + offset + 4] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    return path


def parquet_bomb(folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "bomb.parquet"
    n = 30_000_000
    table = pa.table({
        "label": pa.array(np.zeros(n, dtype=np.int8)),
        "text": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["x" * 100])),
    })
    pq.write_table(table, path, compression="zstd", row_group_size=n)
    return path


def zip_bomb(folder: Path) -> Path:
    """A ZIP of 'images' whose members are ~900 MB of zeros each compressed to ~1 MB."""
    path = folder / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for label in ("a", "b"):
            with archive.open(f"{label}/0.png", "w", force_zip64=True) as handle:
                block = bytes(1 << 20)
                for _ in range(450):
                    handle.write(block)
    return path


def zip_ratio_bomb(folder: Path) -> Path:
    """A ZIP of 20 "images" of 40 MB of zeros each (under the per-image and total caps), ~40 KB each compressed."""
    path = folder / "ratio-bomb.zip"
    block = bytes(40 * 1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for i in range(20):
            archive.writestr(f"{'ab'[i % 2]}/{i}.png", block)
    return path


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(height)), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def big_png_zip(folder: Path) -> Path:
    path = folder / "big-images.zip"
    image = _png(5000, 5000)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for label in ("a", "b"):
            for i in range(4):
                archive.writestr(f"{label}/{i}.png", image)
    return path


def corrupt_db(folder: Path) -> str:
    path = folder / "ws" / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(0).randbytes(100_000))
    return f"sqlite:///{path}"


def deep_keras(folder: Path) -> Path:
    path = folder / "deep.keras"
    config = "[" * 100_000 + "]" * 100_000
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    return path


def deep_yaml_blocks_small(folder: Path) -> Path:
    path = folder / "deep-blocks-1k.yaml"
    path.write_text("mode:\n" + "".join(" " * i + "- \n" for i in range(1, 1000)))
    return path


def a_file(folder: Path) -> Path:
    path = folder / "a-file"
    path.write_text("not a folder\n")
    return path


def study_with_trials(folder: Path) -> str:
    sys.path.insert(0, str(REPO / "tests"))
    import optuna
    from synthetic_studies import make_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    path = folder / "ws" / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{path}"
    make_study(storage, "s", 3)
    return storage


def forged_workspace(folder: Path) -> Path:
    """A workspace whose <fingerprint>.npz declares a 8 TB x_train (stored members, sizes patched)."""
    ws = folder / "given-ws"
    ws.mkdir()
    path = ws / f"{'a' * 64}.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        meta = b'{"name": "x"}'
        archive.writestr("metadata.npy", _npy_header((len(meta),), "|u1") + meta)
        archive.writestr("x_train.npy", _npy_header((10**6, 10**6)) + bytes(64))
    return ws


def read_only_workspace(folder: Path) -> Path:
    ws = folder / "ro-ws"
    ws.mkdir()
    ws.chmod(0o555)
    return ws


# ---------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    """The command line, given the case's folder (which is also the working directory)."""
    root_only_skip: bool = False


def _cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "dptune", *args]


def _load(path: Path) -> list[str]:
    return [PYTHON, "-c", LOAD_DATA, str(path)]


CASES: list[Case] = [
    Case("yaml: billion laughs (tune)", lambda d: _cli("tune", "--config", str(billion_laughs(d)))),
    Case("yaml: billion laughs (train)", lambda d: _cli("train", "--config", str(billion_laughs(d, "run")))),
    Case("yaml: not UTF-8", lambda d: _cli("tune", "--config", str(non_utf8_yaml(d)))),
    Case("yaml: a directory", lambda d: _cli("train", "--config", str(d))),
    Case("yaml: 50k nested flow lists", lambda d: _cli("tune", "--config", str(deep_yaml(d)))),
    Case("yaml: 3k nested block lists", lambda d: _cli("train", "--config", str(deep_yaml_blocks(d)))),
    Case("yaml: 1k nested block lists", lambda d: _cli("train", "--config", str(deep_yaml_blocks_small(d)))),
    Case("run yaml: epochs 1e9", lambda d: _cli("train", "--config", str(run_yaml(d, epochs=1_000_000_000)))),
    Case("run yaml: epochs 1e300", lambda d: _cli("train", "--config", str(run_yaml(d, epochs=1e300)))),
    Case("run yaml: hidden_units [1e9]", lambda d: _cli("train", "--config", str(run_yaml(
        d, model={"kind": "mlp", "hidden_units": [10**9]})))),
    Case("run yaml: 10k hidden layers", lambda d: _cli("train", "--config", str(run_yaml(
        d, model={"kind": "mlp", "hidden_units": [8] * 10_000})))),
    Case("run yaml: synthetic 1e8 x 1e6", lambda d: _cli("train", "--config", str(run_yaml(
        d, dataset={"builtin": "synthetic", "options": {"n_examples": 10**8, "n_features": 10**6}})))),
    Case("run yaml: synthetic image_shape 1e5^3", lambda d: _cli("train", "--config", str(run_yaml(
        d, dataset={"builtin": "synthetic", "options": {"image_shape": [10**5, 10**5, 3]}})))),
    Case("run yaml: keras file 100k nested JSON", lambda d: _cli("train", "--config", str(run_yaml(
        d, model={"kind": "keras_file", "path": str(deep_keras(d))})))),
    Case("train --workspace: forged 8 TB .npz", lambda d: _cli("train", "--workspace", str(forged_workspace(d)),
                                                             "--config", str(run_yaml(
        d, dataset={"name": "x", "fingerprint": "a" * 64})))),
    Case("search yaml: n_trials 1e6", lambda d: _cli("tune", "--no-progress", "--config", str(search_yaml(
        d, n_trials=1_000_000)))),
    Case("search yaml: epochs [1, 1e9]", lambda d: _cli("tune", "--no-progress", "--config", str(search_yaml(
        d, ranges={"epochs": [1, 10**9], "batch_size": 64})))),
    Case("search yaml: impossible ε budget", lambda d: _cli("tune", "--no-progress", "--config", str(search_yaml(
        d, target_epsilon=0.001, ranges={"epochs": 50, "batch_size": 1024})))),
    Case("search yaml: bad storage URL", lambda d: _cli("tune", "--no-progress", "--config", str(search_yaml(
        d, storage="nosuchdb://x/y")))),
    Case("search yaml: read-only workspace", lambda d: _cli("tune", "--no-progress", "--config", str(search_yaml(
        d, workspace=str(read_only_workspace(d))))), root_only_skip=True),
    Case("search yaml: workspace under a file", lambda d: _cli("tune", "--no-progress", "--config", str(search_yaml(
        d, workspace=str(a_file(d) / "ws"))))),
    Case("search yaml: corrupt studies.db", lambda d: (corrupt_db(d), _cli(
        "tune", "--no-progress", "--config", str(search_yaml(d))))[1]),
    Case("epsilon --steps 1e12", lambda d: _cli("epsilon", "--n", "60000", "--batch-size", "256",
                                               "--noise-multiplier", "1.1", "--steps", str(10**12))),
    Case("epsilon --epochs 1e15", lambda d: _cli("epsilon", "--n", "60000", "--batch-size", "256",
                                                "--noise-multiplier", "1.1", "--epochs", "1e15")),
    Case("worker: bad storage URL", lambda d: _cli("worker", "--study", "s", "--storage", "nosuchdb://x")),
    Case("worker: storage under a file", lambda d: _cli("worker", "--study", "s", "--storage",
                                                        f"sqlite:///{a_file(d) / 'studies.db'}")),
    Case("worker: corrupt studies.db", lambda d: _cli("worker", "--study", "s", "--storage", corrupt_db(d))),
    Case("export: bad storage URL", lambda d: _cli("export", "--storage", "not a url", "--study", "s", "-o",
                                                   str(d / "out.yaml"))),
    Case("export: corrupt studies.db", lambda d: _cli("export", "--storage", corrupt_db(d), "--study", "s", "-o",
                                                      str(d / "out.yaml"))),
    Case("export: -o under a file", lambda d: _cli("export", "--storage", study_with_trials(d), "--study", "s",
                                                   "-o", str(a_file(d) / "out.yaml"))),
    Case("data: 200k-column CSV", lambda d: _load(wide_csv(d))),
    Case("data: 200k columns, one repeated name", lambda d: _load(wide_csv_same_names(d))),
    Case("data: 4,000 columns of one name", lambda d: _load(many_same_names_csv(d))),
    Case("data: NPZ of 2 GB zeros (2 MB file)", lambda d: _load(npz_bomb(d))),
    Case("data: NPZ forged sizes", lambda d: _load(npz_forged_shape(d))),
    Case("data: Parquet 30M rows dictionary", lambda d: _load(parquet_bomb(d))),
    Case("data: ZIP bomb of images", lambda d: _load(zip_bomb(d))),
    Case("data: ZIP of 20 x 40 MB zero 'images'", lambda d: _load(zip_ratio_bomb(d))),
    Case("data: 25-megapixel PNGs", lambda d: _load(big_png_zip(d))),
]


def _snapshot(folder: Path) -> dict[str, int]:
    out = {}
    for path in folder.rglob("*"):
        try:
            out[str(path.relative_to(folder))] = path.stat().st_mtime_ns
        except OSError:
            continue
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def run_case(case: Case, folder: Path) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    argv = case.argv(folder)
    before = _snapshot(folder)
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "DPTUNE_WORKSPACE": str(folder / "ws"),
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    start = time.monotonic()
    process = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=_limit_memory)
    deadline = start + TIMEOUT_S
    exit_code: int | None = None
    stderr = b""
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            exit_code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            exit_code = None
            break
        time.sleep(0.05)
    process.returncode = -1
    seconds = time.monotonic() - start
    stderr = process.stderr.read()
    process.stderr.close()
    after = _snapshot(folder)
    written = sorted(k for k, v in after.items() if before.get(k) != v)
    for path in folder.rglob("*"):  # let the test's tmp folder be removed
        if path.is_dir():
            path.chmod(0o755)
    return Outcome(case.name, exit_code, stderr.decode("utf-8", "replace"), seconds, usage.ru_maxrss / 1024, written)


def main() -> None:
    import tempfile

    only = sys.argv[1:]
    print("| case | clean error | crash | hang | memory (MiB) | seconds | written |")
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        if only and not any(word in case.name for word in only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_case(case, Path(tmp) / "case")
        last = [line for line in outcome.stderr.strip().splitlines() if line.strip()][-1:] or [""]
        print(f"| {case.name} | {'yes' if outcome.clean_error else 'no'} | {'yes' if outcome.crash else ''} | "
              f"{'yes' if outcome.hang else ''} | {outcome.max_rss_mib:.0f} | {outcome.seconds:.1f} | "
              f"{len(outcome.written) or ''} | exit {outcome.exit_code}: {last[0][:150]}", flush=True)


if __name__ == "__main__":
    main()
