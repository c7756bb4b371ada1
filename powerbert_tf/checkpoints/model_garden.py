"""TF Model Garden (tf-models-official) BERT checkpoints, read and written without Model Garden.

Model Garden saves `tfm.nlp.networks.BertEncoder` and `tfm.nlp.models.BertClassifier` as
object-based `tf.train.Checkpoint`s, so a variable's name is its path through the objects:

    <encoder>/layer_with_weights-0/embeddings          word embeddings      (vocab, hidden)
    <encoder>/layer_with_weights-1/embeddings          position embeddings  (max_len, hidden)
    <encoder>/layer_with_weights-2/embeddings          token type embeddings
    <encoder>/layer_with_weights-3/{gamma,beta}        embedding LayerNorm
    <encoder>/layer_with_weights-(4+j)/...             transformer block j (names in _BLOCK)
    <encoder>/layer_with_weights-(4+L)/{kernel,bias}   pooler
    <classifier>/layer_with_weights-1/out_proj/...     the classification head

`<encoder>` is `encoder` for the tutorial's `tf.train.Checkpoint(encoder=bert_encoder)` and
`model/layer_with_weights-0` for `tf.train.Checkpoint(model=bert_classifier)`; the reader finds it
by the embeddings' names. Attention kernels are per head: query (hidden, heads, head_size),
output (heads, head_size, hidden).
"""

import json
import os
import re

import numpy as np

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints.bert_weights import BertWeights, read_vocab, write_tokenizer_files
from powerbert_tf.checkpoints.errors import CheckpointError
from powerbert_tf.checkpoints.tf_checkpoint import CheckpointFile, checkpoint_prefix

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_EMBEDDINGS = {0: "word_embeddings", 1: "position_embeddings", 2: "token_type_embeddings"}
_FIRST_BLOCK = 4
# Transformer block sub-layer -> Google's sub-layer; "heads" marks per-head attention kernels.
_BLOCK = {
    "_attention_layer/_query_dense": ("attention/self/query", "heads_in"),
    "_attention_layer/_key_dense": ("attention/self/key", "heads_in"),
    "_attention_layer/_value_dense": ("attention/self/value", "heads_in"),
    "_attention_layer/_output_dense": ("attention/output/dense", "heads_out"),
    "_attention_layer_norm": ("attention/output/LayerNorm", "norm"),
    "_intermediate_dense": ("intermediate/dense", "dense"),
    "_output_dense": ("output/dense", "dense"),
    "_output_layer_norm": ("output/LayerNorm", "norm"),
}
_HEAD = "out_proj"
# What Model Garden's `tf_utils.get_activation` means by each name, in `BertConfig` terms:
# its "gelu" is the tanh approximation.
_ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "tanh": "tanh", "exact_gelu": "gelu"}


def read_model_garden_config(path):
    """`BertConfig` from a Model Garden `bert_config.json` (num_layers, hidden_activation, ...)."""
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if "num_hidden_layers" in data:  # Google's or HF's names: the file is not Model Garden's
        return BertConfig.from_dict(data)
    activation = data.get("hidden_activation", "gelu")
    if activation not in _ACTIVATIONS:
        raise CheckpointError(f"{path}: hidden_activation {activation!r} is not one of {sorted(_ACTIVATIONS)}")
    if data.get("embedding_size") not in (None, data.get("hidden_size")):
        raise CheckpointError(f"{path}: embedding_size {data['embedding_size']} differs from hidden_size; "
                              f"factorized embeddings are not supported")
    try:
        return BertConfig(
            vocab_size=data["vocab_size"], hidden_size=data["hidden_size"], num_hidden_layers=data["num_layers"],
            num_attention_heads=data["num_attention_heads"], intermediate_size=data["intermediate_size"],
            hidden_act=_ACTIVATIONS[activation], max_position_embeddings=data.get("max_position_embeddings", 512),
            type_vocab_size=data.get("type_vocab_size", 2), initializer_range=data.get("initializer_range", 0.02))
    except KeyError as err:
        raise CheckpointError(f"{path}: missing {err.args[0]!r}") from None


def _encoder_root(names, source):
    """The object path of the encoder: the prefix of the word and position embeddings."""
    roots = [name[: -len("layer_with_weights-0/embeddings" + _SUFFIX)] for name in names
             if name.endswith("layer_with_weights-0/embeddings" + _SUFFIX)]
    roots = [r for r in roots if f"{r}layer_with_weights-1/embeddings{_SUFFIX}" in names
             and f"{r}layer_with_weights-3/gamma{_SUFFIX}" in names]
    if len(roots) != 1:
        raise CheckpointError(f"{source}: not a Model Garden BertEncoder checkpoint (found {len(roots)} "
                              f"encoders; expected <encoder>/layer_with_weights-0/embeddings{_SUFFIX})")
    return roots[0]


def _to_google(relative, value):
    """(Google name, array) for one encoder variable (path relative to the encoder), or None."""
    match = re.fullmatch(r"layer_with_weights-(\d+)/(.+)/(\w+)", relative) or \
        re.fullmatch(r"layer_with_weights-(\d+)/(\w+)", relative)
    if not match:
        return None
    index = int(match.group(1))
    sub, leaf = (match.group(2), match.group(3)) if match.lastindex == 3 else ("", match.group(2))
    if index in _EMBEDDINGS and not sub and leaf == "embeddings":
        return f"bert/embeddings/{_EMBEDDINGS[index]}", value
    if index == 3 and not sub and leaf in ("gamma", "beta"):
        return f"bert/embeddings/LayerNorm/{leaf}", value
    if sub not in _BLOCK or index < _FIRST_BLOCK:
        return None
    theirs, kind = _BLOCK[sub]
    name = f"bert/encoder/layer_{index - _FIRST_BLOCK}/{theirs}/{leaf}"
    if kind == "heads_in":  # (hidden, heads, size) -> (hidden, hidden); bias (heads, size) -> (hidden,)
        value = value.reshape(value.shape[0], -1) if leaf == "kernel" else value.reshape(-1)
    elif kind == "heads_out" and leaf == "kernel":  # (heads, size, hidden) -> (hidden, hidden)
        value = value.reshape(-1, value.shape[-1])
    return name, value


def read_model_garden_checkpoint(path, config=None, vocab_path=None, lower_case=None):
    """`BertWeights` from a Model Garden BertEncoder / BertClassifier checkpoint.

    Args:
        path: a checkpoint prefix or a directory holding one.
        config: a `BertConfig`, or a path to a `bert_config.json` (Model Garden's or Google's
            names); by default the sizes are read off the variables' shapes and the activation
            is Model Garden's default, tanh-approximate GELU.
        vocab_path: the `vocab.txt` it was trained with (needed to start a run from it).

    Raises:
        CheckpointError: not readable, not a BERT encoder, or a variable that is missing, extra
            (named) or mis-shaped.
    """
    prefix = checkpoint_prefix(path)
    reader = CheckpointFile(prefix)
    shapes = reader.shapes
    names = {n for n in shapes if n.endswith(_SUFFIX)}
    root = _encoder_root(names, prefix)
    heads_kernel = shapes.get(f"{root}layer_with_weights-{_FIRST_BLOCK}/_attention_layer/_query_dense/kernel{_SUFFIX}")
    if heads_kernel is None or len(heads_kernel) != 3:
        raise CheckpointError(f"{prefix}: no per-head query kernel in {root}layer_with_weights-{_FIRST_BLOCK}")
    num_layers = sum(1 for n in names if re.fullmatch(
        re.escape(root) + r"layer_with_weights-\d+/_attention_layer/_query_dense/kernel" + re.escape(_SUFFIX), n))
    pooler = f"{root}layer_with_weights-{_FIRST_BLOCK + num_layers}"
    tensors, head, ignored = {}, {}, []
    for name in sorted(names):
        value = reader.tensor(name)
        path_ = name[: -len(_SUFFIX)]
        if name.startswith(pooler + "/"):
            leaf = path_[len(pooler) + 1:]
            if leaf not in ("kernel", "bias"):
                raise CheckpointError(f"{prefix}: unexpected variable {path_!r} in the pooler")
            tensors[f"bert/pooler/dense/{leaf}"] = value
        elif name.startswith(root):
            mapped = _to_google(path_[len(root):], value)
            if mapped is None:
                raise CheckpointError(f"{prefix}: unexpected variable {path_!r} (not part of a BERT encoder "
                                      f"this reader knows; embedding projections are not supported)")
            tensors[mapped[0]] = mapped[1]
        elif f"/{_HEAD}/" in path_ + "/":
            head[path_.rsplit("/", 1)[-1]] = value
        elif path_.startswith(("optimizer/", "save_counter")) or ".OPTIMIZER_SLOT" in name or not value.shape:
            ignored.append(path_)  # training state, not the model
        else:
            raise CheckpointError(f"{prefix}: unexpected variable {path_!r} (neither the encoder under {root!r} "
                                  f"nor a classification head's {_HEAD})")
    if isinstance(config, (str, os.PathLike)):
        config = read_model_garden_config(config)
    if config is None:
        config = _config_from_shapes(tensors, heads_kernel[1], num_layers)
    vocab = read_vocab(vocab_path) if vocab_path else None
    if head and set(head) != {"kernel", "bias"}:
        raise CheckpointError(f"{prefix}: the classification head has {sorted(head)}, expected kernel and bias")
    return BertWeights(config, tensors, head.get("kernel"), head.get("bias"), vocab=vocab, lower_case=lower_case,
                       source=prefix).check()


def _config_from_shapes(tensors, heads, num_layers):
    word = tensors["bert/embeddings/word_embeddings"]
    return BertConfig(
        vocab_size=word.shape[0], hidden_size=word.shape[1], num_hidden_layers=num_layers,
        num_attention_heads=int(heads),
        intermediate_size=tensors["bert/encoder/layer_0/intermediate/dense/kernel"].shape[1],
        hidden_act="gelu_new", max_position_embeddings=tensors["bert/embeddings/position_embeddings"].shape[0],
        type_vocab_size=tensors["bert/embeddings/token_type_embeddings"].shape[0])


def model_garden_config(config: BertConfig):
    """A Model Garden `bert_config.json` dict for `config` (the tutorial's `EncoderConfig` keys)."""
    activation = {v: k for k, v in _ACTIVATIONS.items()}.get(config.hidden_act)
    if activation is None:
        raise CheckpointError(f"hidden_act {config.hidden_act!r} has no Model Garden name")
    return {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size, "hidden_activation": activation,
            "dropout_rate": config.hidden_dropout_prob, "attention_dropout_rate": config.attention_probs_dropout_prob,
            "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": config.type_vocab_size, "initializer_range": config.initializer_range}


def _model_garden_variables(weights: BertWeights, encoder_root):
    """{object path: array} of `weights` under Model Garden's names (inverse of the reader)."""
    c = weights.config
    heads, size = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    t = weights.tensors
    out = {f"{encoder_root}/layer_with_weights-{i}/embeddings": t[f"bert/embeddings/{name}"]
           for i, name in _EMBEDDINGS.items()}
    for leaf in ("gamma", "beta"):
        out[f"{encoder_root}/layer_with_weights-3/{leaf}"] = t[f"bert/embeddings/LayerNorm/{leaf}"]
    for j in range(c.num_hidden_layers):
        block = f"{encoder_root}/layer_with_weights-{_FIRST_BLOCK + j}"
        for sub, (theirs, kind) in _BLOCK.items():
            for leaf in (("gamma", "beta") if kind == "norm" else ("kernel", "bias")):
                value = t[f"bert/encoder/layer_{j}/{theirs}/{leaf}"]
                if kind == "heads_in":
                    value = value.reshape(c.hidden_size, heads, size) if leaf == "kernel" else value.reshape(heads, size)
                elif kind == "heads_out" and leaf == "kernel":
                    value = value.reshape(heads, size, c.hidden_size)
                out[f"{block}/{sub}/{leaf}"] = value
    for leaf in ("kernel", "bias"):
        out[f"{encoder_root}/layer_with_weights-{_FIRST_BLOCK + c.num_hidden_layers}/{leaf}"] = \
            t[f"bert/pooler/dense/{leaf}"]
    return out


def save_model_garden_checkpoint(weights: BertWeights, directory):
    """Write `weights` as a Model Garden checkpoint `directory/ckpt-1` with `bert_config.json`
    (and `vocab.txt` when known).

    The object graph has both roots the tutorial uses, sharing the encoder's variables:
    `tf.train.Checkpoint(encoder=bert_encoder).read(...)` restores a `tfm.nlp.networks.BertEncoder`
    and, when the weights have a head, `tf.train.Checkpoint(model=bert_classifier).read(...)` a
    `tfm.nlp.models.BertClassifier` (built with the same `num_classes`).

    Returns:
        the checkpoint prefix.
    """
    weights.check()
    paths = _model_garden_variables(weights, "encoder")
    if weights.has_head:
        paths[f"model/layer_with_weights-1/{_HEAD}/kernel"] = weights.head_kernel
        paths[f"model/layer_with_weights-1/{_HEAD}/bias"] = weights.head_bias
    os.makedirs(directory, exist_ok=True)
    # The classifier's encoder is the encoder object itself, as in a BertClassifier.
    prefix = write_object_checkpoint(paths, os.path.join(directory, "ckpt-1"),
                                     shared={"model/layer_with_weights-0": "encoder"} if weights.has_head else {})
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(model_garden_config(weights.config), f, indent=2)
    if weights.vocab is not None:
        write_tokenizer_files(directory, weights)
    return prefix


def write_object_checkpoint(paths, prefix, shared=None):
    """Write an object-based checkpoint whose variables have the object paths of `paths`.

    Args:
        paths: {"a/b/leaf": array}: the variable `leaf` of object `b`, child `b` of root child `a`.
        prefix: the checkpoint prefix to write.
        shared: {path: other path}: an object reachable under two paths (one object, not a copy).

    Returns:
        the prefix written.
    """
    import tensorflow as tf

    root = tf.Module()
    for path, target in (shared or {}).items():
        *parents, name = path.split("/")
        setattr(_module_path(root, parents), name, _module_path(root, target.split("/")))
    keep = []  # the variables must outlive the write
    for path, value in paths.items():
        *parents, leaf = path.split("/")
        keep.append(tf.Variable(np.asarray(value, np.float32), name=leaf))
        setattr(_module_path(root, parents), leaf, keep[-1])
    children = {name: child for name, child in vars(root).items() if isinstance(child, tf.Module)}
    return tf.train.Checkpoint(**children).write(prefix)


def _module_path(node, parts):
    for part in parts:
        node = _module_tree(node, part)
    return node


def _module_tree(node, name):
    """`node.<name>`, created as an empty trackable `tf.Module` the first time."""
    import tensorflow as tf

    child = getattr(node, name, None)
    if child is None:
        child = tf.Module(name=re.sub(r"\W", "_", name))
        setattr(node, name, child)
    return child
