"""Higher ranks from a taxonomy CSV or from ``Genus_species`` class names."""

from __future__ import annotations

import numpy as np
import pytest

from palaeo_ssl.errors import UserError
from palaeo_ssl.taxonomy import (FROM_NAMES, GENUS, collapse_confusion, from_class_names, genus_of, load_taxonomy,
                                 rank_labels, read_taxonomy)


def test_genus_is_the_first_word_case_insensitive():
    names = ["Albaillella_x", "albaillella_y", "Albaillella_z", "Cenosphaera sp. 1", "Zygo-form", "Solo"]
    tax = from_class_names(names)
    assert tax.source == FROM_NAMES and tax.rank_names == [GENUS]
    # two of three classes spell it with a capital, so the group is shown that way
    assert tax.ranks[GENUS] == ("Albaillella", "Albaillella", "Albaillella", "Cenosphaera", "Zygo", "Solo")
    codes, groups = tax.mapping(GENUS)
    assert groups == ["Albaillella", "Cenosphaera", "Solo", "Zygo"]
    assert codes.tolist() == [0, 0, 0, 1, 3, 2]
    assert tax.is_informative(GENUS)
    assert genus_of("  Spongodiscus__sp  ") == "Spongodiscus"
    # one species per genus: the rank groups nothing and is not informative
    assert not from_class_names(["A_x", "B_y"]).is_informative(GENUS)


def test_spelling_tie_goes_to_sorted_first():
    tax = from_class_names(["albaillella_y", "Albaillella_x"])
    assert set(tax.ranks[GENUS]) == {"Albaillella"}  # "A" sorts before "a"


def test_rank_labels_and_collapsed_confusion():
    tax = from_class_names(["A_1", "a_2", "B_1"])
    y, groups = rank_labels(np.array([0, 1, 2, -1, 1]), tax, GENUS)
    assert groups == ["A", "B"] and y.tolist() == [0, 0, 1, -1, 0]
    cm = np.array([[5, 2, 1], [3, 4, 0], [1, 0, 9]])
    g, names = collapse_confusion(cm, tax, GENUS)
    assert names == ["A", "B"] and g.tolist() == [[14, 1], [1, 9]]
    assert g.sum() == cm.sum()


def test_taxonomy_csv(tmp_path):
    csv = tmp_path / "tax.csv"
    csv.write_text("Class,Genus,Family\nsp_a,G1,F1\nSP_B,G1,F1\nsp_c,G2,F1\nunused,G9,F9\n")
    tax = read_taxonomy(csv, ["sp_a", "sp_b", "sp_c"])  # sp_b matched case-insensitively
    assert tax.rank_names == ["genus", "family"] and tax.source == str(csv)
    assert tax.ranks["genus"] == ("G1", "G1", "G2") and tax.ranks["family"] == ("F1", "F1", "F1")
    assert tax.is_informative("genus") and not tax.is_informative("family")  # one family: nothing to compare
    assert load_taxonomy(["sp_a", "sp_b", "sp_c"], csv).ranks == tax.ranks
    assert load_taxonomy(["X_y"]).source == FROM_NAMES
    with pytest.raises(UserError, match="no rank 'order'"):
        tax.mapping("order")


@pytest.mark.parametrize("text, message", [
    ("name,genus\na,G\n", "needs a 'class' column"),
    ("class\na\n", "no rank column"),
    ("class,genus\na,G\n", r"1 class\(es\) have no row .*: b; add them \(class,genus\)"),
    ("class,genus\na,G\nb,\n", "column 'genus' .* is empty for b"),
])
def test_taxonomy_csv_errors_say_what_to_do(tmp_path, text, message):
    csv = tmp_path / "t.csv"
    csv.write_text(text)
    with pytest.raises(UserError, match=message):
        read_taxonomy(csv, ["a", "b"])
    with pytest.raises(UserError, match="cannot read"):
        read_taxonomy(tmp_path / "missing.csv", ["a"])
