"""Both parsers of the word-vector readers: the compiled fast path and the pure-numpy one."""

from __future__ import annotations

import pytest

from embsurgeon.io import text


@pytest.fixture(params=["compiled", "numpy"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with embsurgeon._fastparse (skipped where it is not built), once
    without; the readers must behave identically either way."""
    if request.param == "compiled":
        if text._fastparse is None:
            pytest.skip("embsurgeon._fastparse is not built (no C compiler at install time)")
        monkeypatch.setattr(text, "COMPILED", text._fastparse)
    else:
        monkeypatch.setattr(text, "COMPILED", None)
    return str(request.param)
