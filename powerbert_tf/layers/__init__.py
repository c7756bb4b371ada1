"""Keras layers of the PoWER-BERT encoder."""

from powerbert_tf.layers.bert_embeddings import BertEmbeddings
from powerbert_tf.layers.clip_constraint import ClipToUnitInterval
from powerbert_tf.layers.encoder_layer import EncoderLayer
from powerbert_tf.layers.hard_extract import HardExtract
from powerbert_tf.layers.self_attention import SelfAttention
from powerbert_tf.layers.soft_extract import SoftExtract

__all__ = ["BertEmbeddings", "ClipToUnitInterval", "EncoderLayer", "HardExtract", "SelfAttention",
           "SoftExtract"]
