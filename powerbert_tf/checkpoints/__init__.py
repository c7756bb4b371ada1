"""Reading (and writing) pretrained BERT weights in Hugging Face, Google and KerasHub formats."""

from powerbert_tf.checkpoints.bert_weights import BertWeights
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.google import load_google_checkpoint, save_google_checkpoint
from powerbert_tf.checkpoints.huggingface import load_hf_safetensors
from powerbert_tf.checkpoints.keras_hub import read_keras_hub, save_keras_hub_preset, to_keras_hub

__all__ = ["BertWeights", "CheckpointError", "load_google_checkpoint", "load_hf_safetensors", "read_keras_hub",
           "save_google_checkpoint", "save_keras_hub_preset", "to_keras_hub"]
