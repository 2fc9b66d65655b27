"""``public_data``: the gensim wheel's WordSim353, polarity and Lee files parse into the
published counts and labels, read without importing gensim.

Skipped when the gensim distribution (its data files) is not installed."""
import importlib.metadata
import sys

import numpy as np
import pytest

from scmp_jax_examples import public_data

try:
    importlib.metadata.distribution("gensim")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("gensim (its data files) is not installed", allow_module_level=True)


def test_files_are_read_without_importing_gensim():
    public_data.wordsim353()
    public_data.polarity()
    assert "gensim" not in sys.modules
    assert public_data.data_path("lee.cor").parent.as_posix().endswith(public_data.DATA_DIR)


def test_wordsim353():
    pairs, scores = public_data.wordsim353()
    assert len(pairs) == len(scores) == 353
    assert scores.dtype == np.float64 and 0.0 <= scores.min() and scores.max() <= 10.0
    assert pairs[:3] == [("love", "sex"), ("tiger", "cat"), ("tiger", "tiger")]
    assert list(scores[:3]) == [6.77, 7.35, 10.0]
    assert all(a and b and "\t" not in a + b for a, b in pairs)
    assert len({w for p in pairs for w in p}) == 437


def test_polarity_labels_follow_the_prefix():
    sentences, labels = public_data.polarity()
    raw = public_data.data_path("pang_lee_polarity.cor").read_bytes().decode("cp1252")
    lines = raw.splitlines()
    assert len(sentences) == len(labels) == len(lines) == 200
    assert labels.dtype == np.int64 and set(labels.tolist()) == {0, 1}
    assert labels.sum() == 100
    assert (labels == [1 if ln.startswith("__label__pos ") else 0 for ln in lines]).all()
    assert (labels[:100] == 0).all() and (labels[100:] == 1).all()
    assert sentences[0] == "simplistic , silly and tedious ."
    assert not any(s.startswith("__label__") for s in sentences)
    assert any("\u2014" in s for s in sentences)        # cp1252 0x97, an em dash


def test_lee_corpora():
    background = public_data.lee_background()
    docs = public_data.lee_documents()
    assert len(background) == 300 and len(docs) == 50
    assert all(p == p.strip() and len(p) > 100 for p in background + docs)
    assert any("\u00a33,000" in d for d in docs)        # cp1252 0xa3, a pound sign
    assert public_data.lee_background(4) == background[:4]
    assert public_data.lee_documents(1) == docs[:1]
    assert not set(background) & set(docs)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_limit_is_checked(bad):
    with pytest.raises(ValueError, match="limit"):
        public_data.lee_background(bad)


def test_bad_names_and_missing_gensim(monkeypatch):
    for bad in ("", "../lee.cor", "a/b", 3):
        with pytest.raises(ValueError, match="name"):
            public_data.data_path(bad)
    with pytest.raises(FileNotFoundError, match="no_such_file"):
        public_data.data_path("no_such_file.txt")

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ImportError, match="pip install --no-deps gensim"):
        public_data.wordsim353()
