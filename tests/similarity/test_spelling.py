from embsurgeon.similarity.spelling import close_spellings, edit_distance

VOCAB = ["the", "King", "king", "kings", "##ing", "Ġcafé", "▁Paris", "queen", "kin", "xyz"]


def test_edit_distance_with_limit():
    assert edit_distance("kitten", "sitting", 3) == 3
    assert edit_distance("kitten", "sitting", 2) is None
    assert edit_distance("", "ab", 2) == 2
    assert edit_distance("abc", "abc", 0) == 0


def test_case_variants_come_first_then_markers_then_edits():
    # ties in distance keep vocabulary order
    assert close_spellings("KING", VOCAB) == ["King", "king", "kings", "##ing", "kin"]
    assert close_spellings("ing", VOCAB)[0] == "##ing"
    assert close_spellings("café", VOCAB) == ["Ġcafé"]
    assert close_spellings("paris", VOCAB) == ["▁Paris"]


def test_nothing_close_and_limit_on_count():
    assert close_spellings("zzzzzzzz", VOCAB) == []
    assert len(close_spellings("kingz", VOCAB, n=2)) == 2
