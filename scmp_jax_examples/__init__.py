"""Example models for scmp_jax (the optional ``[examples]`` extra).

``scmp_jax_examples.minilm``       all-MiniLM-L6-v2 sentence encoder in Flax.
``scmp_jax_examples.minilm_eval``  metrics comparing embeddings to float32.
``scmp_jax_examples.sentences``    a small built-in sentence set.
``scmp_jax_examples.public_data``  public human-rated data read from the gensim wheel.
``scmp_jax_examples.public_eval``  Spearman's rho, cosines and a cross-validated probe.
``scmp_jax_examples.mp_report``    MiniLM under MP SC on that data (``mp_minilm``: its
                                   rules, batching and calibration; ``mp_report_write``:
                                   its files).

Submodules are imported lazily so that ``import scmp_jax_examples`` needs
none of the optional dependencies.
"""
