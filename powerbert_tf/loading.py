"""`load_encoder` / `load_tokenizer`: one entry point for presets, HF and Google BERT directories."""

import dataclasses
import os


from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.google import load_google_checkpoint
from powerbert_tf.checkpoints.huggingface import load_hf_safetensors
from powerbert_tf.encoder import PowerBertEncoder
from powerbert_tf.presets import PRESETS, preset_path
from powerbert_tf.tokenizer import BertTokenizer, read_lower_case


@dataclasses.dataclass(frozen=True)
class CheckpointSource:
    """Where a pretrained BERT lives and in which format ("huggingface" or "google")."""

    directory: str
    format: str
    config_path: str
    weights_path: str
    vocab_path: str


def resolve_checkpoint(name_or_path):
    """Find the config, weights and vocab of a preset name, HF directory or Google directory."""
    directory = preset_path(name_or_path) if name_or_path in PRESETS else name_or_path
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a preset ({sorted(PRESETS)}) nor a directory")
    vocab = os.path.join(directory, "vocab.txt")
    if os.path.isfile(os.path.join(directory, "config.json")):
        return CheckpointSource(directory, "huggingface", os.path.join(directory, "config.json"),
                                os.path.join(directory, "model.safetensors"), vocab)
    if os.path.isfile(os.path.join(directory, "bert_config.json")):
        return CheckpointSource(directory, "google", os.path.join(directory, "bert_config.json"),
                                directory, vocab)
    raise CheckpointError(
        f"{directory} holds neither a Hugging Face checkpoint (config.json + model.safetensors) nor "
        f"a Google BERT checkpoint (bert_config.json + bert_model.ckpt.*)")


def build_encoder(config: BertConfig, **mode):
    """A `PowerBertEncoder` with random weights, built (all variables created)."""
    encoder = PowerBertEncoder(**config.to_dict(), **mode)
    encoder.build()
    return encoder


def load_encoder(name_or_path, retention=None, elimination=None, sequence_length=None):
    """Pretrained `PowerBertEncoder` from a preset (`"minilm-l6"`), HF or Google BERT directory.

    Args:
        retention: hard extract at that configuration: a `RetentionConfig`, or a list of ints
            (word vectors kept per layer, one per layer) together with `sequence_length`.
        elimination: default "hard" when `retention` is given, else "none"; "soft" needs
            `sequence_length`.
        sequence_length: N, the input length the configuration is for. Never guessed from the
            counts: a list without it raises `ValueError` (pass `sequence_length=N` or
            `RetentionConfig(lengths, N)`), and with a `RetentionConfig` it must equal its N.

    Example: `load_encoder("minilm-l6", retention=[12, 10, 8, 6, 4, 2], sequence_length=16)`.
    """
    source = resolve_checkpoint(name_or_path)
    config = BertConfig.from_json_file(source.config_path)
    if elimination is None:
        elimination = "hard" if retention is not None else "none"
    encoder = build_encoder(config, elimination=elimination, retention=retention,
                            sequence_length=sequence_length)
    if source.format == "huggingface":
        load_hf_safetensors(encoder, source.weights_path)
    else:
        load_google_checkpoint(encoder, source.weights_path)
    return encoder


def load_tokenizer(name_or_path, lower_case=None):
    """`BertTokenizer` from a preset name, a checkpoint directory or a `vocab.txt` path."""
    if os.path.isfile(name_or_path):
        vocab, directory = name_or_path, os.path.dirname(name_or_path)
    else:
        directory = preset_path(name_or_path) if name_or_path in PRESETS else name_or_path
        vocab = os.path.join(directory, "vocab.txt")
    if lower_case is None:
        lower_case = read_lower_case(directory)
    return BertTokenizer.from_vocab_file(vocab, lower_case=lower_case)

