"""Training: tasks and data readers, metrics, the three PoWER-BERT steps (fine-tune, configuration
search, re-train) and `RunDir`, the one owner of a run directory.

Imports `powerbert_tf` only (never `serving`, `benchmarks` or the CLI). The tfds builder lives in
`training.tfds_glue_local` and is not imported here, so that reading data and computing metrics
never pull in tensorflow-datasets.
"""
