"""Analyses of a trained PoWER-BERT run (the paper's supplementary experiments).

The layer of `benchmarks`: imports `training`, `serving` and `powerbert_tf`; only `powerbert_cli`
imports it.
"""
