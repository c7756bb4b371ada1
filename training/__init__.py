"""Training support for PoWER-BERT: task definitions, data readers, metrics and a tfds builder.

The tfds builder lives in `training.tfds_glue_local` and is not imported here, so that reading
data and computing metrics never pull in tensorflow-datasets.
"""
