"""Multi-device examples on the host CPU devices (conftest: 4): MiniLM under
``simulate`` with the batch sharded (``scmp_jax_examples.sharded_minilm``), and
``fp4.matmul`` on row-sharded activations (also against golden). Same bits as
one device, output left sharded."""
import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from golden import fp4 as GF
from scmp_jax import fp4
from tests.helpers import bits as _bits

pytestmark = pytest.mark.skipif(len(jax.devices()) < 2, reason="needs >= 2 devices")


def _layer0_sc_rules():
    """SC on all 6 matmuls of layer 0 (Dense per_row, attention act x act per_head)."""
    from scmp_jax_examples.minilm_report import sc_rule

    return [sc_rule(r"encoder/layer_0/.*", stoc_len=32),
            sc_rule(r"encoder/layer_0/attention/(scores|context)", "per_head", act_act=True,
                    stoc_len=32)]


@pytest.mark.parametrize("rules", [None, "sc"], ids=["float32", "sc_layer0"])
def test_sharded_minilm_same_bits_and_sharded_output(loaded, rules):
    from scmp_jax_examples import sharded_minilm as sm
    from scmp_jax_examples.sentences import SENTENCES

    rules = _layer0_sc_rules() if rules == "sc" else rules
    mesh = sm.batch_mesh()
    n = mesh.size
    assert len(SENTENCES) % n == 0
    apply = sm.make_apply(loaded[0], rules)
    emb = sm.sharded_embed(SENTENCES, rules, mesh=mesh, loaded=loaded, apply=apply)
    # output stays distributed: rows over the "batch" axis, len/n rows per device
    assert isinstance(emb.sharding, NamedSharding)
    assert emb.sharding.spec == P(sm.AXIS)
    assert sorted(s.data.shape[0] for s in emb.addressable_shards) == [len(SENTENCES) // n] * n
    assert len(emb.sharding.device_set) == n
    # one device, the per-device batch per call: bit for bit
    ref = sm.single_device_embed(SENTENCES, rules, chunk=len(SENTENCES) // n, loaded=loaded,
                                 apply=apply)
    assert (_bits(emb) == _bits(ref)).all()
    if rules is not None:
        # and the SC layer really ran: not the float32 embeddings
        f32 = sm.single_device_embed(SENTENCES, None, chunk=len(SENTENCES) // n, loaded=loaded)
        assert (_bits(emb) != _bits(f32)).any()


def test_shard_batch_pads_to_the_mesh():
    from scmp_jax_examples import sharded_minilm as sm

    mesh = sm.batch_mesh()
    ids = np.arange(3 * 5, dtype=np.int32).reshape(3, 5)
    out, n = sm.shard_batch({"input_ids": ids}, mesh)
    pad = -3 % mesh.size
    assert n == 3 and out["input_ids"].sharding.spec == P(sm.AXIS, None)
    want = np.concatenate([ids, np.repeat(ids[-1:], pad, axis=0)])
    np.testing.assert_array_equal(np.asarray(out["input_ids"]), want)


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
@pytest.mark.parametrize("shape", [(64, 256, 48), (240, 384, 384)], ids=str)
def test_fp4_matmul_row_sharded_same_bits(fmt, shape):
    N, K, M = shape
    rng = np.random.default_rng(7)
    a = rng.standard_normal((N, K)).astype(np.float32)
    w = rng.standard_normal((M, K)).astype(np.float32)
    mesh = Mesh(np.asarray(jax.devices()), ("x",))
    a_sh = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    qa = fp4.quantize(a_sh, fmt)
    assert qa.codes.sharding.spec == P("x", None)        # quantized codes stay sharded
    y = fp4.matmul(qa, fp4.quantize(w, fmt))
    kw = dict(GF.PRESETS[fmt])                 # golden: codes exact, product within SPEC 9.8
    ga, gw = GF.quantize(a, **kw), GF.quantize(w, **kw)
    assert np.array_equal(np.asarray(qa.codes), ga["codes"])
    y64 = GF.matmul_reference(ga["codes"], ga["scales"], ga["global_scale"], gw["codes"],
                              gw["scales"], gw["global_scale"], scale_dtype_a=kw["scale_dtype"],
                              scale_dtype_w=kw["scale_dtype"])
    assert np.linalg.norm(np.asarray(y, np.float64) - y64) / np.linalg.norm(y64) < 1e-5
    ref = fp4.matmul(fp4.quantize(a, fmt), fp4.quantize(w, fmt))
    assert (_bits(y) == _bits(ref)).all()
    assert y.sharding.spec == P("x", None)
    assert [s.data.shape for s in y.addressable_shards] == [(N // mesh.size, M)] * mesh.size
