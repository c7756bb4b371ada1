"""Reading (and writing) pretrained BERT weights in Hugging Face and Google formats."""

from powerbert_tf.checkpoints.bert_weights import BertWeights
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.google import load_google_checkpoint, save_google_checkpoint
from powerbert_tf.checkpoints.huggingface import load_hf_safetensors

__all__ = ["BertWeights", "CheckpointError", "load_google_checkpoint", "load_hf_safetensors", "save_google_checkpoint"]
