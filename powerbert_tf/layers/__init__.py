"""Keras layers of the BERT encoder (the elimination layers are in `powerbert_tf.elimination`)."""

from powerbert_tf.layers.bert_embeddings import BertEmbeddings
from powerbert_tf.layers.encoder_layer import EncoderLayer
from powerbert_tf.layers.self_attention import SelfAttention

__all__ = ["BertEmbeddings", "EncoderLayer", "SelfAttention"]
