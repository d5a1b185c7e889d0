"""The catalog's optional mean ratings: attached from training data, kept through the shipped CSV."""

from __future__ import annotations

import pandas as pd

from recsys.catalog import Catalog


def test_with_ratings_round_trips_through_csv(tmp_path, toy_catalog):
    ids = toy_catalog.ids()
    rated = toy_catalog.with_ratings({ids[0]: 4.123, ids[1]: 2.5})
    assert rated[ids[0]].rating == 4.123 and rated[ids[2]].rating is None
    assert toy_catalog[ids[0]].rating is None  # the original is unchanged
    assert [m.title for m in rated] == [m.title for m in toy_catalog]
    rated.to_csv(tmp_path / "catalog.csv")
    back = Catalog.from_csv(tmp_path / "catalog.csv")
    assert back[ids[0]].rating == 4.12 and back[ids[1]].rating == 2.5 and back[ids[2]].rating is None


def test_catalog_without_a_rating_column_still_loads(tmp_path):
    pd.DataFrame({"item_id": [1], "title": ["Alien"], "year": [1979], "genres": ["Horror"]}).to_csv(
        tmp_path / "old.csv", index=False)
    assert Catalog.from_csv(tmp_path / "old.csv")[1].rating is None


def test_a_card_shows_the_mean_rating_only_when_known():
    from webapp.views import Card, card_html

    card = Card(1, 7, "Alien", 1979, ("Horror",), "because", "", "", 0.6, 1.0, 1.0, rating=4.06)
    assert "★ 4.1" in card_html(card)
    assert "★" not in card_html(Card(1, 7, "Alien", 1979, ("Horror",), "because", "", "", 0.6, 1.0, 1.0))
