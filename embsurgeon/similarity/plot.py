"""Pictures of a check: norm histograms (copied vs initialized rows) and the distribution of
neighbour overlap, so a person can look instead of read. Needs the ``plot`` extra.

>>> save_check_plot(report, "check.png")                        # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from embsurgeon.errors import require
from embsurgeon.similarity.check import CheckReport


def save_check_plot(report: CheckReport, path: str | Path) -> Path:
    """Draw the check's figures into one PNG (written with matplotlib's Agg backend)."""
    matplotlib = require("matplotlib", extra="plot", purpose="--plot")
    matplotlib.use("Agg")  # no display needed; also keeps pyplot off any GUI toolkit
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), layout="constrained")
    norms, overlap = figure.subplots(1, 2)
    groups = [(v[np.isfinite(v)], label) for v, label in
              ((report.copied_norms, "copied"), (report.initialized_norms, "initialized"))]
    every = np.concatenate([v for v, _ in groups])
    # Shared bins and densities: the groups differ in size by orders of magnitude.
    edges = np.histogram_bin_edges(every, bins=50) if every.size else 10
    for values, label in groups:
        if values.size:
            norms.hist(values, bins=edges, density=True, alpha=0.6,
                       label=f"{label} ({values.size} rows)")
    norms.set_title("row norms in AFTER")
    norms.set_xlabel("L2 norm")
    norms.set_ylabel("density")
    if len(report.copied_norms) or len(report.initialized_norms):
        norms.legend()
    bins = [i / report.k - 0.5 / report.k for i in range(report.k + 2)] if report.k else 10
    overlap.hist(report.overlaps, bins=bins, color="tab:green")
    overlap.set_title(f"neighbour overlap@{report.k} ({len(report.overlaps)} tokens, "
                      f"mean {report.overlap.mean or 0:.2f})")
    overlap.set_xlabel(f"shared neighbours / {report.k}")
    overlap.set_ylabel("tokens")
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path
