"""Close spellings of a token that is not in a vocabulary, for error messages.

Candidates, best first: the same text in another case, the same text under a tokenizer's
continuation or word-start marker (``##ing``, ``Ġcat``, ``▁cat``), then tokens within a small
edit distance (Levenshtein on case-folded text).

>>> close_spellings("Kingg", ["the", "king", "kings", "queen"])
['king', 'kings']
"""

from __future__ import annotations

from collections.abc import Sequence

_MARKERS = ("##", "Ġ", "▁")


def _bare(token: str) -> str:
    for marker in _MARKERS:
        if token.startswith(marker) and len(token) > len(marker):
            return token[len(marker):]
    return token


def edit_distance(a: str, b: str, limit: int) -> int | None:
    """Levenshtein distance of ``a`` and ``b`` if it is at most ``limit``, else None.

    >>> edit_distance("kitten", "sitting", 3), edit_distance("kitten", "sitting", 2)
    (3, None)
    """
    if abs(len(a) - len(b)) > limit:
        return None
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        if min(current) > limit:  # every later row only grows
            return None
        previous = current
    return previous[-1] if previous[-1] <= limit else None


def close_spellings(token: str, vocabulary: Sequence[str], n: int = 5) -> list[str]:
    """Up to ``n`` tokens of ``vocabulary`` spelled like ``token``, closest first."""
    wanted = token.casefold()
    limit = 1 if len(wanted) <= 4 else 2
    ranked: list[tuple[int, int, str]] = []  # (distance, row, token)
    for row, candidate in enumerate(vocabulary):
        if candidate == token:
            continue
        folded = candidate.casefold()
        bare = _bare(folded)
        if folded == wanted:
            ranked.append((-2, row, candidate))
        elif bare == wanted:
            ranked.append((-1, row, candidate))
        elif abs(len(bare) - len(wanted)) <= limit:
            distance = edit_distance(wanted, bare, limit)
            if distance is not None:
                ranked.append((distance, row, candidate))
    ranked.sort()
    return [candidate for _, _, candidate in ranked[:n]]
