"""Counterbalancing: balanced Latin squares (Williams designs) over a study's conditions.

Every row holds each condition once and every position holds each condition equally often; in addition
each condition directly follows every other one equally often (first-order carry-over balance). For an
even number of conditions n that takes n rows; for odd n it takes 2n rows (the square and its mirror),
so participant i gets row ``i mod len(rows)`` — ``i mod n`` for even n, ``i mod 2n`` for odd n.
Not for: storing who got which row (storage) or anything else about a study.
"""

from __future__ import annotations

from collections.abc import Sequence


def williams_row(n: int) -> list[int]:
    """The first row 0, 1, n-1, 2, n-2, ...: consecutive differences are all different mod n."""
    row, low, high = [0], 1, n - 1
    while len(row) < n:
        row.append(low if len(row) % 2 == 1 else high)
        if len(row) % 2 == 0:
            low += 1
        else:
            high -= 1
    return row


def balanced_latin_square(n: int) -> list[list[int]]:
    """Rows of condition indices: n rows for even n, 2n rows (square + mirrored square) for odd n."""
    if n < 1:
        raise ValueError(f"need at least one condition, got {n}")
    first = williams_row(n)
    rows = [[(c + shift) % n for c in first] for shift in range(n)]
    if n % 2 == 1 and n > 1:
        rows += [list(reversed(row)) for row in rows]
    return rows


def order_for(position: int, conditions: Sequence[str]) -> list[str]:
    """The condition order of the participant at 0-based ``position`` (their join order)."""
    rows = balanced_latin_square(len(conditions))
    return [conditions[i] for i in rows[position % len(rows)]]
