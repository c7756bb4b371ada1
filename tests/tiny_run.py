"""A tiny task and a tiny pretrained-format encoder on disk, for fast pipeline tests."""

import os

import numpy as np

from powerbert_tf.checkpoints import save_google_checkpoint
from powerbert_tf.loading import build_encoder
from tests.conftest import TINY

WORDS = ["good", "bad", "movie", "film", "plot", "actor", "very", "not", "a", "the", "is", "was"]


def write_tiny_init(directory, config=TINY):
    """Google-format checkpoint of a random tiny BERT with a matching word vocabulary."""
    encoder = build_encoder(config)
    os.makedirs(directory, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    vocab += [f"[unused{i}]" for i in range(config.vocab_size - len(vocab))]
    vocab_path = os.path.join(directory, "vocab.txt")
    with open(vocab_path, "w") as f:
        f.write("\n".join(vocab) + "\n")
    save_google_checkpoint(encoder, directory)
    return str(directory)


def write_tiny_task_files(directory, n_train=96, n_dev=32, seed=0):
    """TSVs `sentence<TAB>label`; label 1 iff the sentence contains "good"."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            words = list(rng.choice(WORDS[2:], size=rng.integers(3, 10)))
            label = int(rng.random() < 0.5)
            if label:
                words.insert(int(rng.integers(0, len(words))), "good")
            lines.append(" ".join(words) + f"\t{label}")
        paths[split] = os.path.join(directory, f"{split}.tsv")
        with open(paths[split], "w") as f:
            f.write("\n".join(lines) + "\n")
    return paths
