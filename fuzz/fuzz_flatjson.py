"""Coverage-guided differential fuzzer of the native reader (``harvester/records/_flatjson.c``).

Run by ``make fuzz`` (10 minutes) and ``make fuzz-smoke`` (25 s, in CI) after
``fuzz/build_sanitized.sh`` has built the reader under AddressSanitizer and UBSan with gcc's
edge coverage (``fuzz/coverage.c``). atheris installs here, but its libFuzzer would see no
coverage of a gcc-built extension (that needs clang), so the loop is our own, as AFL's:

- a corpus of simulator windows and hand-made edge cases, mutated with JSON in mind (cuts,
  byte flips, structural tokens, repeated keys, deep nesting, long texts, many fields, many
  records, boundary numbers and dates, splices), kept where an input reaches new edges;
- deterministic for a seed: the same seed tries the same inputs (as many as time allows);
- the oracle, for every input: every array the reader builds validates in full; a body it
  reads is read alike by the pyarrow.json path (``parse._parse_large``) and passes
  ``check_shape``; a body that path refuses, the reader refuses or reads into a table
  ``parse`` rejects; the C shape scan agrees with its Python fallback; ``parse_window``
  raises nothing but ``ShapeError``. A sanitizer report ends the child.

The parent (no sanitizer) runs the child with the ASan runtime preloaded, restarts it (next
seed) after a crash until the time is up, keeps each crashing or mismatching input under
``fuzz/build/out/findings`` and prints the figures: executions, seconds, corpus, edges,
findings. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "fuzz" / "build"
PYTHON_SCAN_MAX = 32 * 1024
# The reader reads an exact-size copy of each body that it mallocs (FLATJSON_EXACT_COPY), so
# Python's own allocator may stay: ASan watches every byte the reader touches either way.
CHILD_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:exitcode=86:allocator_may_return_null=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
}


# -- the parent ------------------------------------------------------------------------------


def parent(args: argparse.Namespace) -> int:
    asan = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = Path(args.out)
    findings = out / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **CHILD_ENV, "LD_PRELOAD": asan, "PYTHONPATH": str(ROOT)}
    deadline = time.monotonic() + args.seconds
    totals: dict[str, Any] = {"executions": 0, "children": 0, "crashes": 0, "mismatches": 0}
    seed = args.seed
    started = time.monotonic()
    while (left := deadline - time.monotonic()) > 1:
        current = out / "current.bin"
        command = [sys.executable, __file__, "--child", "--seed", str(seed), "--out", str(out)]
        command += ["--seconds", f"{left:.1f}", "--build", args.build]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        totals["children"] += 1
        report = _last_json(done.stdout)
        if report is not None:
            for key in ("executions", "mismatches"):
                totals[key] += report[key]
            totals["corpus"], totals["edges"] = report["corpus"], report["edges"]
        if done.returncode == 1:
            # The harness itself failed (a Python error): no point in starting it again.
            print(done.stderr[-4000:], file=sys.stderr)
            return 2
        if done.returncode != 0 or report is None or not report["done"]:
            totals["crashes"] += 1
            body = current.read_bytes() if current.exists() else b""
            name = f"crash-{hashlib.sha1(body).hexdigest()[:12]}"
            (findings / f"{name}.bin").write_bytes(body)
            (findings / f"{name}.txt").write_text(
                f"exit status {done.returncode}\n{done.stderr[-20000:]}"
            )
            print(f"CRASH (exit {done.returncode}): {findings / name}.bin", flush=True)
            print(done.stderr[-4000:], file=sys.stderr)
        seed += 1
    totals["seconds"] = round(time.monotonic() - started, 1)
    totals["findings"] = totals["crashes"] + totals["mismatches"]
    print(json.dumps(totals), flush=True)
    return 1 if totals["findings"] else 0


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None


# -- the child: load the sanitized reader, then fuzz -----------------------------------------


def load_sanitized(build: Path) -> ModuleType:
    """The sanitized build as ``harvester.records._flatjson``, before anything imports the other."""
    path = build / f"_flatjson{sysconfig.get_config_var('EXT_SUFFIX')}"
    spec = importlib.util.spec_from_file_location("harvester.records._flatjson", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"no sanitized build at {path}: run fuzz/build_sanitized.sh")
    module = importlib.util.module_from_spec(spec)
    sys.modules["harvester.records._flatjson"] = module
    spec.loader.exec_module(module)
    return module


class Coverage:
    """The edge counters of coverage.c, bucketed as AFL does (1, 2, 3, 4-7, 8-15, ...)."""

    def __init__(self, library_path: str) -> None:
        import numpy as np

        self._np = np
        library = ctypes.CDLL(library_path)
        size = library.fuzzcov_map_size()
        self._reset = library.fuzzcov_reset
        raw = (ctypes.c_ubyte * size).in_dll(library, "fuzzcov_map")
        self._counters = np.frombuffer(raw, dtype=np.uint8)
        buckets = [0, 1, 2, 4] + [8] * 4 + [16] * 8 + [32] * 16 + [64] * 96 + [128] * 128
        self._bucket = np.array(buckets, dtype=np.uint8)
        self._seen = np.zeros(size, dtype=np.uint8)

    def reset(self) -> None:
        self._reset()

    def is_new(self) -> bool:
        """Whether the run since ``reset`` reached an edge, or a count of one, never seen."""
        hits = self._bucket[self._counters]
        new = hits & ~self._seen
        if not new.any():
            return False
        self._seen |= hits
        return True

    @property
    def edges(self) -> int:
        return int(self._np.count_nonzero(self._seen))


def child(args: argparse.Namespace) -> int:
    module = load_sanitized(Path(args.build))
    from fuzz import mutations
    from harvester.errors import ShapeError
    from harvester.records import limits, native_reader, parse

    if getattr(native_reader, "_flatjson", None) is not module:
        raise SystemExit("the installed reader was imported before the sanitized one")
    coverage = Coverage(str(module.__file__))
    rng = random.Random(args.seed)
    corpus = mutations.seeds()
    out = Path(args.out)
    current = os.open(out / "current.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    deadline = time.monotonic() + args.seconds
    executions = mismatches = 0

    # The shape scan's own bounds, as check_shape passes them (the envelope is one more name).
    scan_limits = (limits.MAX_DEPTH, limits.MAX_FIELDS + 1)

    def oracle(body: bytes) -> str | None:
        return _differences(body, native_reader, parse, ShapeError, scan_limits)

    for body in corpus:
        _remember(current, body)
        coverage.reset()
        if (problem := oracle(body)) is not None:
            raise SystemExit(f"a seed fails the oracle ({problem}): {body[:200]!r}")
        coverage.is_new()
    while time.monotonic() < deadline:
        body = mutations.mutate(rng, corpus)
        _remember(current, body)
        coverage.reset()
        problem = oracle(body)
        executions += 1
        if problem is not None:
            mismatches += 1
            _keep(out / "findings", body, problem)
        elif coverage.is_new() and len(body) <= mutations.MAX_KEPT:
            corpus.append(body)
        # The figures so far, for the parent to count should a sanitizer end this child.
        if executions % 200 == 0:
            _report(args.seed, executions, mismatches, len(corpus), coverage.edges)
    _report(args.seed, executions, mismatches, len(corpus), coverage.edges, done=True)
    return 0


def _report(
    seed: int, executions: int, mismatches: int, corpus: int, edges: int, *, done: bool = False
) -> None:
    figures = {"seed": seed, "executions": executions, "mismatches": mismatches}
    figures |= {"corpus": corpus, "edges": edges, "done": done}
    print(json.dumps(figures), flush=True)


def _remember(fd: int, body: bytes) -> None:
    """The input about to run, where the parent finds it should the child die."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, body, 0)


def _keep(findings: Path, body: bytes, problem: str) -> None:
    findings.mkdir(parents=True, exist_ok=True)
    name = f"mismatch-{hashlib.sha1(body).hexdigest()[:12]}"
    (findings / f"{name}.bin").write_bytes(body)
    (findings / f"{name}.txt").write_text(problem + "\n")
    print(f"MISMATCH {findings / name}.bin: {problem[:300]}", file=sys.stderr, flush=True)


def _differences(
    body: bytes,
    native_reader: Any,
    parse: Any,
    shape_error: type[Exception],
    scan_limits: tuple[int, int],
) -> str | None:
    """What the oracle (module docstring) finds wrong with ``body``, or None."""
    # The Python scan costs a hundred times the C one: only bodies up to this size (nearly
    # every mutant) are scanned both ways.
    if len(body) <= PYTHON_SCAN_MAX:
        scanned = native_reader.scan_shape(body, *scan_limits)
        by_python = native_reader.scan_shape_python(body, *scan_limits)
        if scanned != by_python:
            return f"scan_shape: C {scanned} != Python {by_python}"
    try:
        native = native_reader.read_flat_records(body)
        if native is not None:
            for column in native.columns:
                for chunk in column.chunks:
                    chunk.validate(full=True)
    except Exception as exc:
        return f"the native reader raised {exc!r}"
    try:
        native_reader.check_shape(body)
        expected = parse._parse_large(body)
    except shape_error as exc:
        if native is None:
            return _entry_points(body, parse, shape_error)
        try:
            parse._normalise(native)
        except shape_error:
            return _entry_points(body, parse, shape_error)
        return f"the native reader read a body the pyarrow.json path refuses ({exc})"
    except Exception as exc:
        return f"the pyarrow.json path raised {exc!r}"
    if native is None:
        return _entry_points(body, parse, shape_error)
    # Read natively, the entry points return this very table: no need to read it again.
    try:
        got = parse._normalise(native)
    except shape_error as exc:
        return f"the pyarrow.json path read a body whose native table is refused ({exc})"
    if not got.schema.equals(expected.schema):
        return f"schemas differ: native {got.schema} != pyarrow {expected.schema}"
    if not got.equals(expected):
        return "values differ between the native reader and the pyarrow.json path"
    return None


def _entry_points(body: bytes, parse: Any, shape_error: type[Exception]) -> str | None:
    try:
        parse.parse_window(body)
    except shape_error:
        pass
    except Exception as exc:
        return f"parse_window raised {exc!r}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(BUILD / "out"))
    parser.add_argument("--build", default=str(BUILD))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
