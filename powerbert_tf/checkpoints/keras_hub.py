"""KerasHub BERT (`keras_hub.models.BertBackbone`, `BertTextClassifier`) to and from `BertWeights`.

KerasHub names a BERT's variables by layer (`transformer_layer_0/self_attention_layer/query/kernel`)
and keeps the attention weights' heads on their own axes: query/key/value kernels
(hidden, heads, head_dim), their biases (heads, head_dim), the output kernel
(heads, head_dim, hidden). Google's names hold them as (hidden, hidden) and (hidden,).

KerasHub's `BertBackbone` fixes what `BertConfig` leaves open: its feed-forward activation is the
tanh approximation of GELU (Google's original BERT; `hidden_act="gelu_new"` here) and every layer
norm's epsilon is 1e-12. An import therefore records "gelu_new"; an export of a model trained
with exact GELU (Hugging Face's "gelu", e.g. MiniLM) would change what it computes (about 3e-3 on
MiniLM's hidden states), so `to_keras_hub` refuses it unless `allow_gelu_approximation=True`.

keras_hub is imported inside the functions, so `import powerbert_tf` does not load it.
"""

import json
import os
import re

import keras
import numpy as np

from powerbert_tf.bert_config import BertConfig
from powerbert_tf.checkpoints.bert_weights import BertWeights
from powerbert_tf.checkpoints.errors import CheckpointError

KERAS_HUB_HIDDEN_ACT = "gelu_new"  # BertConfig's name for the tanh-approximate GELU BertBackbone uses
KERAS_HUB_LAYER_NORM_EPS = 1e-12
_BACKBONE, _CLASSIFIER = "keras_hub>BertBackbone", "keras_hub>BertTextClassifier"

_GLOBAL_NAMES = {
    "token_embedding/embeddings": "bert/embeddings/word_embeddings",
    "position_embedding/embeddings": "bert/embeddings/position_embeddings",
    "segment_embedding/embeddings": "bert/embeddings/token_type_embeddings",
    "embeddings_layer_norm/gamma": "bert/embeddings/LayerNorm/gamma",
    "embeddings_layer_norm/beta": "bert/embeddings/LayerNorm/beta",
    "pooled_dense/kernel": "bert/pooler/dense/kernel",
    "pooled_dense/bias": "bert/pooler/dense/bias",
}
_LAYER_PARTS = {
    "self_attention_layer/query": "attention/self/query",
    "self_attention_layer/key": "attention/self/key",
    "self_attention_layer/value": "attention/self/value",
    "self_attention_layer/attention_output": "attention/output/dense",
    "self_attention_layer_norm": "attention/output/LayerNorm",
    "feedforward_intermediate_dense": "intermediate/dense",
    "feedforward_output_dense": "output/dense",
    "feedforward_layer_norm": "output/LayerNorm",
}
_LAYER_PATH = re.compile(r"^transformer_layer_(\d+)/(.+)/(kernel|bias|gamma|beta)$")


def google_name(keras_hub_path, source):
    """Google's name of a `BertBackbone` variable (`transformer_layer_0/feedforward_output_dense/
    kernel` -> `bert/encoder/layer_0/output/dense/kernel`).

    Raises:
        CheckpointError: naming a path that is no BERT variable this mapping knows.
    """
    if keras_hub_path in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[keras_hub_path]
    match = _LAYER_PATH.match(keras_hub_path)
    if match is None or match.group(2) not in _LAYER_PARTS:
        raise CheckpointError(f"{source}: unexpected KerasHub variable {keras_hub_path!r}: not part of "
                              f"a KerasHub BertBackbone as this converter knows it")
    layer, part, leaf = match.groups()
    return f"bert/encoder/layer_{layer}/{_LAYER_PARTS[part]}/{leaf}"


def _merge_head_axes(keras_hub_path, value):
    """An attention weight with its (heads, head_dim) axes merged into one, as Google's dense
    layers hold it; every other weight unchanged."""
    if "/self_attention_layer/" not in keras_hub_path:
        return value
    if keras_hub_path.endswith("/attention_output/kernel"):
        return value.reshape(-1, value.shape[-1])  # (heads, head_dim, hidden) -> (hidden, hidden)
    if keras_hub_path.endswith("/kernel"):
        return value.reshape(value.shape[0], -1)  # (hidden, heads, head_dim) -> (hidden, hidden)
    return value.reshape(-1)  # (heads, head_dim) -> (hidden,)


def google_tensors(keras_hub_arrays, source):
    """Dict Google name -> float32 array, from dict KerasHub variable path -> array.

    Raises:
        CheckpointError: naming the first KerasHub variable the mapping does not know.
    """
    return {google_name(path, source): _merge_head_axes(path, np.asarray(value, np.float32))
            for path, value in keras_hub_arrays.items()}


def read_keras_hub(model_or_path):
    """The weights of a KerasHub BERT as a checked `BertWeights`.

    Args:
        model_or_path: a `keras_hub.models.BertBackbone` or `BertTextClassifier`, the path of one
            saved as a `.keras` file, or a preset directory written by `save_to_preset`.
            A classifier's logits layer becomes the head; its tokenizer (a preset's
            `tokenizer.json` without a classifier) gives `vocab` and `lower_case`.

    Raises:
        CheckpointError: the model is no KerasHub BERT, KerasHub cannot load it (its message
            names the variable, and both shapes when one is mis-shaped), it holds a variable the
            mapping does not know, a variable is missing or mis-shaped for its config, or its
            classifier applies an activation to the logits.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        source = os.fspath(model_or_path)
        model, tokenizer = _load(source)
    else:
        model = model_or_path
        source = f"KerasHub {type(model).__name__} {getattr(model, 'name', '')!r}"
        tokenizer = _preprocessor_tokenizer(model)
    backbone, head_kernel, head_bias = _backbone_and_head(model, source)
    arrays = {variable.path: keras.ops.convert_to_numpy(variable) for variable in backbone.weights}
    return BertWeights(
        config=_bert_config(backbone, source), tensors=google_tensors(arrays, source),
        head_kernel=head_kernel, head_bias=head_bias,
        vocab=None if tokenizer is None else tuple(tokenizer.get_vocabulary()),
        lower_case=None if tokenizer is None else bool(tokenizer.lowercase), source=source).check()


def _load(path):
    """(model, tokenizer or None) from a `.keras` file or a KerasHub preset directory."""
    import keras_hub  # registers KerasHub's classes for `load_model`

    if os.path.isfile(path) and path.endswith(".keras"):
        model = _keras_hub_call(path, keras.saving.load_model, path, compile=False)
        return model, _preprocessor_tokenizer(model)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is neither a .keras file nor a KerasHub preset directory")
    if _registered_name(path, "config.json") != _BACKBONE:
        raise CheckpointError(f"{path}: config.json does not describe a KerasHub BertBackbone "
                              f"(a KerasHub preset directory is written by `save_to_preset`)")
    if os.path.isfile(os.path.join(path, "task.json")) and \
            _registered_name(path, "task.json") == _CLASSIFIER:
        model = _keras_hub_call(path, keras_hub.models.BertTextClassifier.from_preset, path)
        return model, _preprocessor_tokenizer(model)
    # Any other task's head (masked LM, embedder) is not ours to read: the encoder is.
    backbone = _keras_hub_call(path, keras_hub.models.BertBackbone.from_preset, path)
    tokenizer = None
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        tokenizer = _keras_hub_call(path, keras_hub.models.BertTokenizer.from_preset, path)
    return backbone, tokenizer


def _registered_name(directory, filename):
    """The `registered_name` of the Keras object a preset's JSON file describes, else None."""
    try:
        with open(os.path.join(directory, filename)) as f:
            return json.load(f).get("registered_name")
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"{directory}: unreadable {filename}: {err}") from err


def _keras_hub_call(source, function, *args, **kwargs):
    """`function(*args, **kwargs)`, its errors re-raised as `CheckpointError`s naming `source`."""
    try:
        return function(*args, **kwargs)
    except CheckpointError:
        raise
    except (ValueError, OSError, TypeError, KeyError) as err:
        # Keras' message names the variable and both shapes, then prints the variable's values.
        message = re.sub(r", dtype=.*", ">", str(err), flags=re.S)
        raise CheckpointError(f"{source}: KerasHub could not load it: {message}") from err


def _preprocessor_tokenizer(model):
    preprocessor = getattr(model, "preprocessor", None)
    return None if preprocessor is None else preprocessor.tokenizer


def _backbone_and_head(model, source):
    """(BertBackbone, head kernel (hidden, classes) or None, head bias (classes,) or None)."""
    import keras_hub

    if isinstance(model, keras_hub.models.BertTextClassifier):
        logits = model.output_dense
        if logits.activation is not keras.activations.linear:
            raise CheckpointError(
                f"{source}: its logits layer applies {logits.activation.__name__!r}; "
                f"PowerBertClassifier's head outputs linear logits and cannot represent it")
        kernel, bias = (keras.ops.convert_to_numpy(w).astype(np.float32)
                        for w in (logits.kernel, logits.bias))
        return model.backbone, kernel, bias
    if isinstance(model, keras_hub.models.BertBackbone):
        return model, None, None
    raise CheckpointError(f"{source}: a {type(model).__name__}, not a KerasHub BertBackbone or "
                          f"BertTextClassifier")


def _bert_config(backbone, source):
    activation = backbone.transformer_layers[0].activation
    if getattr(activation, "__name__", None) != "gelu_approximate":
        raise CheckpointError(f"{source}: feed-forward activation {activation!r}; a KerasHub "
                              f"BertBackbone uses gelu_approximate")
    return BertConfig(
        vocab_size=backbone.vocabulary_size, hidden_size=backbone.hidden_dim,
        num_hidden_layers=backbone.num_layers, num_attention_heads=backbone.num_heads,
        intermediate_size=backbone.intermediate_dim, hidden_act=KERAS_HUB_HIDDEN_ACT,
        hidden_dropout_prob=backbone.dropout, attention_probs_dropout_prob=backbone.dropout,
        max_position_embeddings=backbone.max_sequence_length, type_vocab_size=backbone.num_segments,
        # BertBackbone gives every layer norm the embeddings' epsilon.
        layer_norm_eps=float(backbone.embeddings_layer_norm.epsilon))


def to_keras_hub(weights: BertWeights, sequence_length=None, allow_gelu_approximation=False):
    """A KerasHub model computing what `weights` compute.

    Args:
        weights: checked first.
        sequence_length: the classifier preprocessor's padded length; default the config's
            `max_position_embeddings`.
        allow_gelu_approximation: export a model trained with exact GELU anyway; KerasHub then
            computes the tanh approximation (outputs differ slightly).

    Returns:
        a `keras_hub.models.BertTextClassifier` (no output activation: logits) when `weights`
        have a head, with a `BertTextClassifierPreprocessor` on `weights.vocab` when they have
        one (else `preprocessor=None`; `lower_case=None` lower-cases); else a
        `keras_hub.models.BertBackbone`. KerasHub records no label names and one dropout rate
        (`hidden_dropout_prob`).

    Raises:
        CheckpointError: a missing, extra or mis-shaped variable (named), an activation or
            layer-norm epsilon a KerasHub BertBackbone cannot compute, a vocabulary KerasHub's
            BertTokenizer rejects (it needs [CLS], [SEP], [PAD] and [MASK]).
    """
    import keras_hub

    weights.check()
    _check_representable(weights, allow_gelu_approximation)
    config = weights.config
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size)
    for variable in backbone.weights:
        name = google_name(variable.path, f"keras_hub {keras_hub.__version__}")
        variable.assign(np.reshape(weights.tensors[name], variable.shape))  # splits the head axes
    if not weights.has_head:
        return backbone
    preprocessor = None
    if weights.vocab is not None:
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            _tokenizer(weights), sequence_length=sequence_length or config.max_position_embeddings)
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=weights.num_classes,
                                                     preprocessor=preprocessor)
    classifier.output_dense.set_weights([weights.head_kernel, weights.head_bias])
    return classifier


def save_keras_hub_preset(weights: BertWeights, directory, sequence_length=None,
                          allow_gelu_approximation=False):
    """Write `to_keras_hub(weights, ...)` as a KerasHub preset directory with KerasHub's own
    `save_to_preset` (`config.json`, `model.weights.h5`, with a head `task.json`,
    `task.weights.h5`, with a vocabulary `tokenizer.json`, `assets/tokenizer/vocabulary.txt`).

    `keras_hub.models.BertTextClassifier.from_preset(directory)` (or `BertBackbone.from_preset`
    without a head) loads it offline. Returns `directory`.
    """
    model = to_keras_hub(weights, sequence_length, allow_gelu_approximation)
    model.save_to_preset(directory)
    if not weights.has_head and weights.vocab is not None:
        _tokenizer(weights).save_to_preset(directory)
    return directory


def _check_representable(weights, allow_gelu_approximation):
    config = weights.config
    exact_gelu_allowed = config.keras_activation == "gelu" and allow_gelu_approximation
    if config.keras_activation != "gelu_approximate" and not exact_gelu_allowed:
        hint = (" (exact GELU: pass allow_gelu_approximation=True to export it with the "
                "approximation)") if config.keras_activation == "gelu" else ""
        raise CheckpointError(f"{weights.source}: hidden_act {config.hidden_act!r}, but a KerasHub "
                              f"BertBackbone always uses the tanh approximation of GELU{hint}")
    if config.layer_norm_eps != KERAS_HUB_LAYER_NORM_EPS:
        raise CheckpointError(f"{weights.source}: layer_norm_eps {config.layer_norm_eps}, but a "
                              f"KerasHub BertBackbone always uses {KERAS_HUB_LAYER_NORM_EPS}")


def _tokenizer(weights):
    """A KerasHub `BertTokenizer` on `weights.vocab`; lower-casing strips accents, like
    `powerbert_tf.BertTokenizer` and Hugging Face's uncased BERT (KerasHub's default does not)."""
    import keras_hub

    lower_case = True if weights.lower_case is None else bool(weights.lower_case)
    try:
        return keras_hub.models.BertTokenizer(vocabulary=list(weights.vocab), lowercase=lower_case,
                                              strip_accents=lower_case)
    except ValueError as err:  # e.g. a vocabulary without [MASK]
        raise CheckpointError(f"{weights.source}: KerasHub's BertTokenizer rejects the "
                              f"vocabulary: {err}") from err
