"""Smaller classifiers cut from a fine-tuned one: fewer layers (distillation students) or fewer
attention heads (head pruning). The baselines PoWER-BERT is compared with start here.

Both copy weights under Google's variable names (`checkpoints.variable_names`), so whatever the
source model's elimination mode, the result is a plain BERT (elimination "none") of the new shape.
"""

import numpy as np

from powerbert_tf.bert_config import BertConfig

_HEAD_COLUMNS = ("attention/self/query", "attention/self/key", "attention/self/value")
_HEAD_ROWS = "attention/output/dense/kernel"


def evenly_spaced_layers(num_layers, kept_layers):
    """Indices of `kept_layers` of `num_layers` layers, spread evenly from the first:
    6 -> 3 keeps (0, 2, 4), DistilBERT's one layer out of two; 6 -> 2 keeps (0, 3)."""
    if not 1 <= kept_layers <= num_layers:
        raise ValueError(f"a student keeps 1..{num_layers} layers, got {kept_layers}")
    return tuple(int(i * num_layers / kept_layers) for i in range(kept_layers))


def select_layers(classifier, layers):
    """A classifier keeping the encoder layers `layers` (in that order) of `classifier`, with its
    embeddings, pooler and head; layer `layers[i]` becomes layer i."""
    layers = tuple(int(j) for j in layers)
    encoder = classifier.encoder
    total = encoder.bert_config.num_hidden_layers
    if not layers or any(not 0 <= j < total for j in layers):
        raise ValueError(f"layers must be indices in 0..{total - 1}, got {list(layers)}")
    tensors = _encoder_tensors(classifier)
    renamed = {name: value for name, value in tensors.items() if "/encoder/layer_" not in name}
    for new, old in enumerate(layers):
        prefix = f"bert/encoder/layer_{old}/"
        renamed.update({f"bert/encoder/layer_{new}/{name[len(prefix):]}": value
                        for name, value in tensors.items() if name.startswith(prefix)})
    config = BertConfig(**dict(encoder.bert_config.to_dict(), num_hidden_layers=len(layers)))
    heads = [encoder.attention_heads[j] for j in layers]
    return _classifier(classifier, config, heads, renamed)


def prune_heads(classifier, kept_heads):
    """A classifier whose layer j keeps only the attention heads `kept_heads[j]` (indices into that
    layer's current heads, at least one per layer).

    The query/key/value kernels (D, H*d) and biases (H*d,) lose the columns of the removed heads
    and the attention output kernel (H*d, D) their rows, so the removed heads cost nothing; the
    model equals `classifier` run with those heads' outputs zeroed (`head_mask`), because the
    output projection is linear in the concatenated head outputs.
    """
    encoder = classifier.encoder
    if len(kept_heads) != len(encoder.encoder_layers):
        raise ValueError(f"kept_heads has {len(kept_heads)} entries for {len(encoder.encoder_layers)} layers")
    size = encoder.bert_config.hidden_size // encoder.bert_config.num_attention_heads
    tensors = _encoder_tensors(classifier)
    for j, (heads, present) in enumerate(zip(kept_heads, encoder.attention_heads)):
        heads = sorted(set(int(h) for h in heads))
        if not heads or heads[0] < 0 or heads[-1] >= present:
            raise ValueError(f"layer {j} has heads 0..{present - 1} and must keep at least one; asked to keep {heads}")
        units = np.concatenate([np.arange(h * size, (h + 1) * size) for h in heads])
        for part in _HEAD_COLUMNS:
            kernel, bias = f"bert/encoder/layer_{j}/{part}/kernel", f"bert/encoder/layer_{j}/{part}/bias"
            tensors[kernel], tensors[bias] = tensors[kernel][:, units], tensors[bias][units]
        rows = f"bert/encoder/layer_{j}/{_HEAD_ROWS}"
        tensors[rows] = tensors[rows][units, :]
    heads = [len(set(h)) for h in kept_heads]
    return _classifier(classifier, encoder.bert_config, heads, tensors)


def _encoder_tensors(classifier):
    from powerbert_tf.checkpoints.variable_names import google_variable_map

    return {name: variable.numpy() for name, variable in google_variable_map(classifier.encoder).items()}


def _classifier(source, config, attention_heads, tensors):
    from powerbert_tf.checkpoints.variable_names import assign_weights
    from powerbert_tf.loading import build_encoder

    encoder = build_encoder(config, attention_heads=attention_heads)
    assign_weights(encoder, tensors, source=f"classifier {source.name!r}")
    model = type(source)(encoder, **source.head_arguments(source.num_classes, source.dropout))
    model.build()
    model.head.set_weights(source.head.get_weights())
    return model
