"""The encoder's variables under their names in Google's original BERT checkpoints.

Google's names (`bert/encoder/layer_0/attention/self/query/kernel`) are the canonical names every
loader maps to; their kernels are (in, out) like Keras'.
"""

from powerbert_tf.checkpoints.errors import CheckpointError

_LAYER_PARTS = {
    "attention.query": "attention/self/query",
    "attention.key": "attention/self/key",
    "attention.value": "attention/self/value",
    "attention.output_dense": "attention/output/dense",
    "attention_norm": "attention/output/LayerNorm",
    "intermediate": "intermediate/dense",
    "output_dense": "output/dense",
    "output_norm": "output/LayerNorm",
}
_DENSE = ("kernel", "bias")
_NORM = ("gamma", "beta")


def _sublayer(root, dotted):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def google_variable_map(encoder):
    """Dict Google name -> Keras variable for every pretrained weight of a `PowerBertEncoder`.

    Soft-extract retention weights are not pretrained and are not in the map.
    """
    emb = encoder.embeddings
    names = {
        "bert/embeddings/word_embeddings": emb.word_embeddings.embeddings,
        "bert/embeddings/position_embeddings": emb.position_embeddings.embeddings,
        "bert/embeddings/token_type_embeddings": emb.token_type_embeddings.embeddings,
        "bert/embeddings/LayerNorm/gamma": emb.layer_norm.gamma,
        "bert/embeddings/LayerNorm/beta": emb.layer_norm.beta,
        "bert/pooler/dense/kernel": encoder.pooler.kernel,
        "bert/pooler/dense/bias": encoder.pooler.bias,
    }
    for j, layer in enumerate(encoder.encoder_layers):
        for ours, theirs in _LAYER_PARTS.items():
            sub = _sublayer(layer, ours)
            for attr in (_NORM if theirs.endswith("LayerNorm") else _DENSE):
                names[f"bert/encoder/layer_{j}/{theirs}/{attr}"] = getattr(sub, attr)
    return names


def expected_shapes(config):
    """Dict Google name -> shape of every pretrained weight of a BERT with `config`, in the order
    of `google_variable_map` (no model is built)."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "bert/embeddings/word_embeddings": (config.vocab_size, h),
        "bert/embeddings/position_embeddings": (config.max_position_embeddings, h),
        "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
    }
    dense = {"intermediate": (h, i), "output_dense": (i, h)}
    for j in range(config.num_hidden_layers):
        for ours, theirs in _LAYER_PARTS.items():
            prefix = f"bert/encoder/layer_{j}/{theirs}"
            if theirs.endswith("LayerNorm"):
                shapes[f"{prefix}/gamma"] = shapes[f"{prefix}/beta"] = (h,)
            else:
                kernel = dense.get(ours, (h, h))
                shapes[f"{prefix}/kernel"], shapes[f"{prefix}/bias"] = kernel, (kernel[1],)
    return shapes


def assign_weights(encoder, tensors, source):
    """Copy `tensors` (Google name -> array) into `encoder`, checking every name and shape.

    Raises:
        CheckpointError: naming the first missing variable (and how many are missing) or the
            variable whose shape differs, with both shapes and `source`.
    """
    targets = google_variable_map(encoder)
    missing = [name for name in targets if name not in tensors]
    if missing:
        raise CheckpointError(
            f"{source}: variable {missing[0]!r} is missing ({len(missing)} of {len(targets)} expected "
            f"variables missing; first few: {missing[:5]})")
    for name, variable in targets.items():
        value = tensors[name]
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"{source}: variable {name!r} has shape {tuple(value.shape)}, the encoder expects "
                f"{tuple(variable.shape)} (does the config match the checkpoint?)")
    for name, variable in targets.items():
        variable.assign(tensors[name])


def copy_encoder_weights(source, target):
    """Copy every pretrained weight of one `PowerBertEncoder` into another of the same size.

    The elimination mode may differ: this is how fine-tuned weights enter the configuration search
    and searched weights enter re-training. Retention weights are not copied.
    """
    assign_weights(target, {name: v.numpy() for name, v in google_variable_map(source).items()},
                   source=f"encoder {source.name!r}")
