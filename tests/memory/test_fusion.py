"""Reciprocal rank fusion and the FTS5 expression built from a free-text query."""

import pytest

from kelpie.memory import RRF_K, keyword_query, reciprocal_rank_fusion


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


def test_keyword_query_quotes_words_and_drops_stopwords() -> None:
    assert keyword_query("What is the cat's NAME?", every_word=True) == '"cat" AND "s" AND "name"'
    assert keyword_query("cat name", every_word=False) == '"cat" OR "name"'


def test_keyword_query_keeps_stopwords_when_nothing_else_is_left() -> None:
    assert keyword_query("who is he", every_word=False) == '"who" OR "is" OR "he"'


def test_keyword_query_neutralises_fts_syntax() -> None:
    query = keyword_query('NEAR(a b) OR "x" AND col:* -y ^z', every_word=False)
    assert query == '"near" OR "b" OR "x" OR "col" OR "y" OR "z"'
    assert keyword_query("?!* ()", every_word=True) is None
