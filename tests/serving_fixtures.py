"""Tiny exported models for serving tests: a 120-token vocabulary and a random-weight classifier."""

from powerbert_tf import BertTokenizer, PowerBertClassifier
from powerbert_tf.loading import build_encoder
from serving.export import export_saved_model
from tests.conftest import TINY

WORDS = ["good", "bad", "movie", "plot", "great", "awful", "the", "was", "is", "not", "very",
         "fun", "dull", "actors", "story", "and", "but", "it", "this"]
TINY_N = 16
TINY_RETENTION = [12, 8, 4]


def tiny_vocab():
    """120 tokens: the specials, the words above, their '##' pieces, and single letters."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"##{w}" for w in WORDS]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)] + [f"##{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    vocab += [".", ",", "!", "?"]
    vocab += [f"[unused{i}]" for i in range(TINY.vocab_size - len(vocab))]
    assert len(vocab) == TINY.vocab_size
    return vocab


def tiny_tokenizer():
    return BertTokenizer(tiny_vocab(), lower_case=True)


def tiny_classifier(retention=TINY_RETENTION, num_classes=2, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    mode = dict(elimination="hard", retention=retention, sequence_length=TINY_N) if retention else {}
    model = PowerBertClassifier(build_encoder(TINY, **mode), num_classes=num_classes)
    model.build()
    return model


def export_tiny(base, retention=TINY_RETENTION, num_classes=2, pair=False, version=None, seed=0):
    """(model, tokenizer, version_dir) of a tiny classifier exported under `base`."""
    model, tokenizer = tiny_classifier(retention, num_classes, seed), tiny_tokenizer()
    labels = [f"class_{i}" for i in range(num_classes)] if num_classes > 1 else []
    path = export_saved_model(model, tokenizer, base=str(base), max_length=TINY_N, label_names=labels,
                              task_name="tiny", pair=pair, version=version)
    return model, tokenizer, path
