"""The method of PoWER-BERT in one place: which word vectors matter and how many to keep.

- `significance`: significance scores from attention probabilities (pure function).
- `ranking`: top-k positions, [CLS] first, padding last (pure functions).
- `word_selection`: what hard extract ranks by: significance, or the static Head-WS / Rand-WS
  rules (pure functions).
- `retention`: `RetentionConfig` (l_1..l_L and N), its rules, FLOP ratio, mass penalty.
- `SoftExtract` (configuration search) and `HardExtract` (top-k + gather) wrap them as layers.

Nothing here imports the rest of `powerbert_tf` (only its Keras registration helper).
"""

from powerbert_tf.elimination.clip_constraint import ClipToUnitInterval
from powerbert_tf.elimination.hard_extract import HardExtract
from powerbert_tf.elimination.retention import RetentionConfig, RetentionError, mass_penalty
from powerbert_tf.elimination.significance import significance_scores
from powerbert_tf.elimination.soft_extract import SoftExtract
from powerbert_tf.elimination.word_selection import WORD_SELECTIONS

__all__ = ["ClipToUnitInterval", "HardExtract", "RetentionConfig", "RetentionError", "SoftExtract",
           "WORD_SELECTIONS", "mass_penalty", "significance_scores"]
