import io

from scmp_jax import cli


def test_demo_quick_runs_and_reports_every_variant():
    buf = io.StringIO()
    rows = cli.demo(shapes=("small",), stoc_lens=(None, 16), sc_prec=5, repeats=1, out=buf)
    text = buf.getvalue()
    assert "per_row" in text and "unipolar" in text and "chunk_d=128" in text
    assert len(rows) >= 10
    for r in rows:
        assert 0.0 <= r["rel_err"] < float("inf") and r["ms"] > 0
    # bipolar per_row at full length is a usable approximation of the exact matmul
    full = [r for r in rows if r["granularity"] == "per_row" and r["options"] == "mode=bipolar"
            and r["stoc_len"] == 32]
    assert full and full[0]["rel_err"] < 0.2


def test_main_parses_quick():
    assert cli.main(["demo", "--quick", "--sc-prec", "4", "--stoc-lens", "8"]) == 0
