"""Reciprocal rank fusion, the words a free-text query is searched by, and the FTS5
expression SQLite builds from them."""

import pytest

from kelpie.memory import RRF_K, query_words, reciprocal_rank_fusion
from kelpie.storage._sqlite_search import fts5_expression


def test_fusion_sums_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1]]))
    assert fused[1] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert fused[3] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert fused[2] == pytest.approx(1 / (RRF_K + 2))


def test_fusion_ranks_agreement_above_one_list() -> None:
    keys = [key for key, _ in reciprocal_rank_fusion([[7, 8, 9], [9, 10]])]
    assert keys[0] == 9
    assert set(keys) == {7, 8, 9, 10}


def test_fusion_breaks_ties_by_best_rank_then_key() -> None:
    keys = [key for key, _ in reciprocal_rank_fusion([[5, 4], [4, 5], [6]])]
    assert keys == [4, 5, 6]


def test_fusion_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


def test_query_words_are_lowercase_words_once_each_without_stopwords() -> None:
    assert query_words("What is the cat's NAME? cat") == ("cat", "s", "name")


def test_query_words_keep_stopwords_when_nothing_else_is_left() -> None:
    assert query_words("who is he") == ("who", "is", "he")


def test_query_words_hold_no_query_syntax() -> None:
    words = query_words('NEAR(a b) OR "x" AND col:* -y ^z & !w | <->')
    assert words == ("near", "b", "x", "col", "y", "z", "w")
    assert query_words("?!* ()") == ()


def test_the_fts5_expression_quotes_each_word() -> None:
    assert fts5_expression(("cat", "name"), every_word=True) == '"cat" AND "name"'
    assert fts5_expression(("cat", "name"), every_word=False) == '"cat" OR "name"'
