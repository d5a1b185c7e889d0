"""Balanced Latin squares: each condition once per row, equally often per position, and every ordered
pair of conditions adjacent equally often (first-order carry-over balance)."""

from __future__ import annotations

from collections import Counter

import pytest

from study.latin import balanced_latin_square, order_for


@pytest.mark.parametrize("n", range(2, 9))
def test_each_condition_once_per_row_and_equally_often_per_position(n):
    rows = balanced_latin_square(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    assert all(sorted(row) == list(range(n)) for row in rows)
    for position in range(n):
        assert Counter(row[position] for row in rows) == {c: len(rows) // n for c in range(n)}


@pytest.mark.parametrize("n", range(2, 9))
def test_every_ordered_pair_follows_equally_often(n):
    rows = balanced_latin_square(n)
    pairs = Counter((a, b) for row in rows for a, b in zip(row, row[1:], strict=False))
    expected = 1 if n % 2 == 0 else 2
    assert pairs == {(a, b): expected for a in range(n) for b in range(n) if a != b}


def test_known_square_for_four_conditions():
    assert balanced_latin_square(4) == [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]


def test_participant_i_gets_row_i_mod_rows():
    names = ["a", "b", "c", "d"]
    assert [order_for(i, names) for i in range(4)] == [order_for(i + 4, names) for i in range(4)]
    assert order_for(1, names) == ["b", "c", "a", "d"]
    odd = ["x", "y", "z"]
    assert len({tuple(order_for(i, odd)) for i in range(6)}) == 6 and order_for(6, odd) == order_for(0, odd)


def test_degenerate_sizes():
    assert balanced_latin_square(1) == [[0]]
    with pytest.raises(ValueError):
        balanced_latin_square(0)
