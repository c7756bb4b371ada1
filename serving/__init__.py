"""Serving: SavedModel export in TF Serving's layout, a TF-Serving-compatible REST server and
client (TF Serving's model config file, version labels and Prometheus metrics), the deployment kit
for the real TF Serving, and TFLite / ONNX / TF-TRT conversion.

Imports `powerbert_tf` only (never `training`): an export is given a model, its vocabulary, its
labels and N, and knows nothing of run directories or tasks.
"""
