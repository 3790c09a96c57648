"""Alignment: map a table onto a target vocabulary (matching, OOV initialization, transforms).

>>> from embsurgeon.align import align
>>> aligned = align(table, "bert-base-uncased/", init="subword,mean")   # doctest: +SKIP
>>> aligned.report.summary()                                            # doctest: +SKIP
'30522 rows: 24811 copied (...), 5711 initialized (...)'
"""

from embsurgeon.align.api import Alignment, AlignmentReport, align
from embsurgeon.align.init import InitMethod, Weighting
from embsurgeon.align.match import MatchLevel
from embsurgeon.align.norms import NormMatch
from embsurgeon.align.postprocess import Transforms

__all__ = ["Alignment", "AlignmentReport", "InitMethod", "MatchLevel", "NormMatch", "Transforms",
           "Weighting", "align"]
