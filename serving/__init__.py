"""Serving: SavedModel export in TF Serving's layout, a TF-Serving-compatible REST server and
client, and TFLite / ONNX / TF-TRT conversion.

Imports `powerbert_tf` only (never `training`): an export is given a model, its vocabulary, its
labels and N, and knows nothing of run directories or tasks.
"""
