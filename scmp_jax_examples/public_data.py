"""Public, human-rated evaluation data shipped inside the ``gensim`` wheel.

The files live in ``gensim/test/test_data/`` and are read as package data of
the installed distribution; gensim itself is never imported (its import needs
scipy and smart_open, which a ``pip install --no-deps gensim`` leaves out):

* ``wordsim353.tsv``: the WordSimilarity-353 collection (Finkelstein et al.),
  353 word pairs with the mean human similarity on a 0-10 scale; two ``#``
  comment lines, then ``word1<TAB>word2<TAB>score``;
* ``pang_lee_polarity.cor``: 200 movie-review sentences (Pang & Lee), one a
  line as ``__label__neg <text>`` or ``__label__pos <text>`` (the first 100
  negative, the last 100 positive), cp1252-encoded;
* ``lee_background.cor``: 300 news paragraphs (Lee et al.), one a line, UTF-8;
* ``lee.cor``: the 50 news documents of the Lee corpus, one a line, cp1252.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

__all__ = ["DATA_DIR", "data_path", "wordsim353", "polarity", "lee_background", "lee_documents"]

#: folder of the files inside the gensim distribution
DATA_DIR = "gensim/test/test_data"
POLARITY_LABELS = {"__label__neg": 0, "__label__pos": 1}


def data_path(name: str) -> Path:
    """Path of ``gensim/test/test_data/<name>`` in the installed gensim wheel."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ValueError(f"name must be a plain file name, got {name!r}")
    try:
        dist = importlib.metadata.distribution("gensim")
    except importlib.metadata.PackageNotFoundError as e:
        raise ImportError("the public evaluation data ships with gensim: "
                          "pip install --no-deps gensim (only its data files are read)") from e
    path = Path(dist.locate_file(f"{DATA_DIR}/{name}"))
    if not path.is_file():
        raise FileNotFoundError(f"{DATA_DIR}/{name} is not in the installed gensim "
                                f"{dist.version} ({path})")
    return path


def _lines(name: str, encoding: str) -> list:
    return data_path(name).read_text(encoding=encoding).splitlines()


def _limit(items: list, limit, name: str = "limit") -> list:
    if limit is None:
        return items
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{name} must be None or an int >= 1, got {limit!r}")
    return items[:int(limit)]


def wordsim353() -> tuple:
    """``(pairs, scores)``: a list of 353 ``(word1, word2)`` and their mean human
    similarity as a float64 array, in file order."""
    pairs, scores = [], []
    for i, line in enumerate(_lines("wordsim353.tsv", "utf-8"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"wordsim353.tsv line {i}: expected 3 tab-separated fields")
        pairs.append((parts[0].strip(), parts[1].strip()))
        scores.append(float(parts[2]))
    return pairs, np.asarray(scores, np.float64)


def polarity() -> tuple:
    """``(sentences, labels)``: 200 review sentences (label prefix removed,
    surrounding whitespace stripped) and int64 labels, 1 = positive, 0 = negative."""
    sentences, labels = [], []
    for i, line in enumerate(_lines("pang_lee_polarity.cor", "cp1252"), 1):
        if not line.strip():
            continue
        tag, _, text = line.partition(" ")
        if tag not in POLARITY_LABELS:
            raise ValueError(f"pang_lee_polarity.cor line {i}: unknown label {tag!r}")
        sentences.append(text.strip())
        labels.append(POLARITY_LABELS[tag])
    return sentences, np.asarray(labels, np.int64)


def lee_background(limit=None) -> list:
    """The news paragraphs of ``lee_background.cor`` (300; the first ``limit``)."""
    return _limit([s.strip() for s in _lines("lee_background.cor", "utf-8") if s.strip()],
                  limit)


def lee_documents(limit=None) -> list:
    """The 50 documents of ``lee.cor`` (the first ``limit``)."""
    return _limit([s.strip() for s in _lines("lee.cor", "cp1252") if s.strip()], limit)
