"""Named real photograph sets: found through their variable or their default folder beside the
checkout, and when absent, a message that names the folder, the variable and the README."""

from __future__ import annotations

import pytest

from navya.data.real import REAL_SETS, RealSet, real_set


def _voc(root):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    return root


def test_the_variable_names_the_folder_and_only_a_voc_folder_counts(tmp_path, monkeypatch):
    s = RealSet("t", "NAVYA_TEST_SET", "shared/real/t", "a test set")
    monkeypatch.setenv("NAVYA_TEST_SET", str(tmp_path / "photos"))
    assert s.folder() == tmp_path / "photos"
    assert s.locate() is None  # absent
    (tmp_path / "photos").mkdir()
    assert s.locate() is None  # a folder, but not a VOC set
    _voc(tmp_path / "photos")
    assert s.locate() == tmp_path / "photos"


def test_the_default_folder_sits_beside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("NAVYA_TEST_SET", raising=False)
    s = RealSet("t", "NAVYA_TEST_SET", "shared/real/t", "a test set")
    checkout = tmp_path / "main"
    checkout.mkdir()
    assert s.folder(checkout) == tmp_path / "shared" / "real" / "t"
    assert s.locate(checkout) is None
    message = s.missing(checkout)
    assert str(tmp_path / "shared" / "real" / "t") in message
    assert "set NAVYA_TEST_SET" in message and "README, 'Real photographs'" in message
    _voc(tmp_path / "shared" / "real" / "t")
    assert s.locate(checkout) == tmp_path / "shared" / "real" / "t"
    monkeypatch.setenv("NAVYA_TEST_SET", "  ")  # blank: the default
    assert s.locate(checkout) == tmp_path / "shared" / "real" / "t"


def test_the_known_sets_and_an_unknown_name():
    assert real_set("voc2012-100") is REAL_SETS["voc2012-100"]
    assert real_set("voc2012-100").env == "NAVYA_REAL_PHOTOS"
    with pytest.raises(KeyError, match="unknown real photograph set 'nope'; known: voc2012-100"):
        real_set("nope")
