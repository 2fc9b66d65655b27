"""Example models for scmp_jax (the optional ``[examples]`` extra).

``scmp_jax_examples.minilm``       all-MiniLM-L6-v2 sentence encoder in Flax.
``scmp_jax_examples.minilm_eval``  metrics comparing embeddings to float32.
``scmp_jax_examples.sentences``    a small built-in sentence set.

Submodules are imported lazily so that ``import scmp_jax_examples`` needs
none of the optional dependencies.
"""
