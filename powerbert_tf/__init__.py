"""powerbert-tf: PoWER-BERT (progressive word-vector elimination) for TensorFlow 2 / Keras 3."""

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints import CheckpointError
from powerbert_tf.classifier import PowerBertClassifier
from powerbert_tf.elimination import (HardExtract, RetentionConfig, RetentionError, SoftExtract, mass_penalty,
                                      significance_scores)
from powerbert_tf.encoder import PowerBertEncoder
from powerbert_tf.loading import load_encoder, load_tokenizer
from powerbert_tf.multiple_choice import PowerBertMultipleChoice
from powerbert_tf.tokenizer import BertTokenizer

__all__ = ["BertConfig", "BertTokenizer", "CheckpointError", "HardExtract", "PowerBertClassifier",
           "PowerBertEncoder", "PowerBertMultipleChoice", "RetentionConfig", "RetentionError", "SoftExtract",
           "load_encoder", "load_tokenizer", "mass_penalty", "significance_scores"]
