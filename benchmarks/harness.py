"""Shared benchmark harness: each contender runs in a fresh subprocess, so wall time and peak
resident memory belong to it alone, and peers are compared in the same run.

Peak memory is the child's VmHWM from /proc, not ru_maxrss: Linux carries ru_maxrss across
exec from the parent, so a parent that imported torch would inflate every contender.

    from harness import measure
    m = measure("import gensim; ...", label="gensim")
    print(m.seconds, m.peak_mb)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"  # generated inputs; git-ignored

_WRAPPER = """
import json, sys, time
sys.path.insert(0, {root!r})
def _hwm_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
{setup}
_t0 = time.perf_counter()
{body}
_elapsed = time.perf_counter() - _t0
_extra = globals().get("RESULT")
print("__BENCH__" + json.dumps({{"seconds": _elapsed,
      "peak_kb": _hwm_kb(), "result": _extra}}))
"""


@dataclass(frozen=True)
class Measurement:
    label: str
    seconds: float
    peak_mb: float
    result: object = None


def measure(body: str, *, label: str, setup: str = "", timeout: float = 3600) -> Measurement:
    """Run ``body`` (timed) after ``setup`` (untimed imports) in a fresh Python process.

    ``body`` may set a global ``RESULT`` (JSON-serialisable) to pass a figure back.
    """
    code = _WRAPPER.format(root=str(ROOT), setup=textwrap.dedent(setup),
                           body=textwrap.dedent(body))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{proc.stderr[-4000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("__BENCH__"))
    data = json.loads(line.removeprefix("__BENCH__"))
    return Measurement(label, data["seconds"], data["peak_kb"] / 1024, data["result"])


def baseline_mb() -> float:
    """Peak memory of a bare interpreter that imported numpy, to subtract where fair."""
    return measure("import numpy", label="baseline").peak_mb


def ratio_line(name: str, ours: Measurement, peer: Measurement) -> str:
    return (f"{name:40} ours {ours.seconds:8.2f}s {ours.peak_mb:8.0f}MB | "
            f"{peer.label} {peer.seconds:8.2f}s {peer.peak_mb:8.0f}MB | "
            f"speed-up {peer.seconds / ours.seconds:6.1f}x  memory ratio "
            f"{ours.peak_mb / peer.peak_mb:4.2f}")
