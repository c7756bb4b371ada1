"""Shared checks for every public layer and model, after KerasHub's `TestCase` (`run_layer_test`,
`run_serialization_test`, `run_precision_test`, `run_model_saving_test`), and float64 NumPy
references written from METHOD.md, independent of the Keras code (weights are read off it).

Letters: B batch, T sequence length, D hidden size, H heads, K kept positions.
"""

import inspect
import json
import math

import keras
import numpy as np
import tensorflow as tf
from scipy.special import erf

# === Checks ===


def check_config_round_trip(instance, init_kwargs):
    """`from_config(get_config())` gives an equal config, through Keras' registry too (what
    `.keras` files use); every `__init__` argument is in the config, with the value passed."""
    cls = type(instance)
    config = instance.get_config()
    json.dumps(config)  # a `.keras` file stores it as JSON
    params = [p.name for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    missing = [name for name in params if name not in config]
    assert not missing, f"{cls.__name__}.get_config() lacks __init__ arguments {missing}"
    for name, value in init_kwargs.items():
        if isinstance(value, (bool, int, float, str, list, tuple)):
            assert json.loads(json.dumps(config[name])) == json.loads(json.dumps(value)), name
    assert cls.from_config(config).get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(instance)))
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is cls and revived.get_config() == config
    return config


@keras.saving.register_keras_serializable(package="powerbert_tests")
class LayerModel(keras.Model):
    """Holds one layer so that a `.keras` file can store it (only models are saved).

    Call args:
        inputs: dict of the layer's call arguments; `call_kwargs` (JSON values) are added.
    """

    def __init__(self, layer, call_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        self.inner = layer
        self.call_kwargs = dict(call_kwargs or {})

    def build(self, input_shape=None):
        if not self.inner.built:
            self.inner.build(None)
        self.built = True

    def call(self, inputs):
        return self.inner(**inputs, **self.call_kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.inner), call_kwargs=self.call_kwargs)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def save_and_load(instance, path, call_kwargs=None):
    """The instance after a `.keras` round trip (a layer travels inside a `LayerModel`)."""
    model = instance if isinstance(instance, keras.Model) else LayerModel(instance, call_kwargs)
    if not model.built:
        model.build()
    model.save(path)
    loaded = keras.saving.load_model(path)
    return loaded if isinstance(instance, keras.Model) else loaded.inner


def outputs_of(result, names):
    """Name the arrays of a call's result: a tensor, a tuple (named by `names`) or a dict whose
    lists (per-layer details) become `key_0`, `key_1`, ..."""
    if isinstance(result, dict):
        named = {}
        for key, value in result.items():
            if isinstance(value, (list, tuple)):
                named.update({f"{key}_{j}": v for j, v in enumerate(value)})
            else:
                named[key] = value
        return named
    if isinstance(result, (list, tuple)):
        assert len(result) == len(names)
        return dict(zip(names, result))
    return {names[0]: result}


def assert_outputs_close(got, want, tol):
    """Every reference array matches (integers exactly, floats to `tol`, relative and absolute)."""
    # Integers (kept positions, masks) first: a different selection explains any float mismatch.
    for key in sorted(want, key=lambda k: not np.issubdtype(np.asarray(want[k]).dtype, np.integer)):
        expected, actual = want[key], np.asarray(got[key])
        assert actual.shape == np.shape(expected), (key, actual.shape, np.shape(expected))
        if np.issubdtype(np.asarray(expected).dtype, np.integer):
            np.testing.assert_array_equal(actual, expected, err_msg=key)
        else:
            actual = actual.astype(np.float64)
            assert np.isfinite(actual).all(), key
            np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, err_msg=key)


# === NumPy references (float64) ===


def as_float64(variable):
    return np.asarray(variable, np.float64)


def _dense(x, layer):
    return x @ as_float64(layer.kernel) + as_float64(layer.bias)


def _layer_norm(x, layer):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + layer.epsilon) * as_float64(layer.gamma) + as_float64(layer.beta)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))),
    "gelu_approximate": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "relu": lambda x: np.maximum(x, 0.0),
}


def reference_embeddings(layer, input_ids, token_type_ids):
    """float (B, T, D): layer norm of word + position + token-type embeddings."""
    length = input_ids.shape[1]
    summed = (as_float64(layer.word_embeddings.embeddings)[input_ids]
              + as_float64(layer.position_embeddings.embeddings)[:length]
              + as_float64(layer.token_type_embeddings.embeddings)[token_type_ids])
    return _layer_norm(summed, layer.layer_norm)


def reference_attention(layer, hidden, mask):
    """`(output (B, T, D), probs (B, H, T, T))`; padded keys get probability 0."""
    batch, length, size = hidden.shape
    heads = layer.num_heads

    def split(y):
        return y.reshape(batch, length, heads, size // heads).transpose(0, 2, 1, 3)

    q, k, v = (split(_dense(hidden, dense)) for dense in (layer.query, layer.key, layer.value))
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size // heads)
    probs = _softmax(np.where(mask[:, None, None, :] > 0, logits, -np.inf))
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, size)
    return _dense(context, layer.output_dense), probs


def reference_significance(probs, mask):
    """(B, T): attention each real word receives from the other real words, over all heads."""
    real = mask.astype(bool)
    others = ~np.eye(probs.shape[-1], dtype=bool)
    return np.einsum("bhqw,bq,qw->bw", probs, real, others) * real


def keep_order(scores, mask):
    """Positions in the order elimination keeps them: the first real token ([CLS]), the other
    real tokens by descending score (lower position first on ties), then padding in order."""
    real = [t for t in range(len(mask)) if mask[t]]
    ranked = sorted(real[1:], key=lambda t: (-scores[t], t))
    return real[:1] + ranked + [t for t in range(len(mask)) if not mask[t]]


def reference_selection_scores(word_selection, significance, mask, seed=0, layer_index=0):
    """(B, T) scores whose `keep_order` is the word selection's: the significance itself; for
    Head-WS minus the real-token index (0 at [CLS]); for Rand-WS the float32 priority
    `default_rng([seed, layer_index]).random(...)[i]` of the i-th real token. Padding: 0."""
    if word_selection == "significance":
        return significance
    index = np.cumsum(mask, axis=1) - 1  # i at the i-th real token of the row
    if word_selection == "head":
        return np.where(mask > 0, -index, 0).astype(np.float64)
    priorities = np.random.default_rng([seed, layer_index]).random(mask.shape[1]).astype(np.float32)
    return np.where(mask > 0, priorities[np.maximum(index, 0)], 0).astype(np.float64)


def reference_hard_extract(hidden, mask, scores, keep, budget=None):
    """`(hidden (B, K, D), mask (B, K), positions (B, K))`, K = min(keep, T), in word order.
    With a per-row `budget`, only each row's `budget[b]` first-kept positions stay in the mask."""
    k = min(keep, hidden.shape[1])
    orders = [keep_order(s, m) for s, m in zip(scores, mask)]
    positions = np.array([sorted(order[:k]) for order in orders], np.int32)
    rows = np.arange(len(positions))[:, None]
    kept_mask = mask[rows, positions].copy()
    if budget is not None:
        for b, order in enumerate(orders):
            within = set(order[:budget[b]])
            kept_mask[b] *= np.array([p in within for p in positions[b]], kept_mask.dtype)
    return hidden[rows, positions], kept_mask, positions


def reference_soft_extract(hidden, mask, scores, retention, relative=False):
    """float (B, T, D): each word vector times the retention weight of its rank; relative: of
    its rank's share of the row's n real tokens, weight `floor(rank * N / n)` (padding: the last)."""
    ranks = np.empty(mask.shape, np.int64)
    for b in range(len(mask)):
        ranks[b, keep_order(scores[b], mask[b])] = np.arange(mask.shape[1])
        if relative:
            n, bins = int(mask[b].sum()), len(retention)
            ranks[b] = [r * bins // n if r < n else bins - 1 for r in ranks[b]]
    return hidden * retention[ranks][..., None]


def reference_encoder_layer(layer, hidden, mask, keep=None, budget=None):
    """METHOD.md's placement: attention sub-block on every position, then elimination, then the
    feed-forward sub-block. Returns hidden, attention_mask, attention_probs and significance."""
    attended, probs = reference_attention(layer.attention, hidden, mask)
    x = _layer_norm(hidden + attended, layer.attention_norm)
    scores = reference_significance(probs, mask)
    if layer.elimination == "hard":
        ranked = reference_selection_scores(layer.word_selection, scores, mask, layer.selection_seed,
                                            layer.layer_index)
        x, mask, _ = reference_hard_extract(x, mask, ranked, keep or layer.keep, budget)
    elif layer.elimination == "soft":
        x = reference_soft_extract(x, mask, scores, as_float64(layer.extract.retention), layer.relative)
    ffn = _dense(ACTIVATIONS[layer.activation](_dense(x, layer.intermediate)), layer.output_dense)
    return {"hidden": _layer_norm(x + ffn, layer.output_norm), "attention_mask": mask,
            "attention_probs": probs, "significance": scores}


def reference_encoder(encoder, inputs):
    """The encoder's output dict, with per-layer `significance_j` and `attention_masks_j`.
    Length-aware layers keep ceil(l_j * T / N) (the README's rule), others l_j; relative ones
    have ceil(l_j * T / N) slots of which row b keeps ceil(l_j * n_b / N), n_b its real tokens."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    x = reference_embeddings(encoder.embeddings, ids, inputs["token_type_ids"])
    length, out = ids.shape[1], {}
    real_tokens = mask.sum(axis=1)
    for j, layer in enumerate(encoder.encoder_layers):
        keep = budget = None
        if encoder.length_aware or (encoder.relative_retention and layer.elimination == "hard"):
            l_j, n = encoder.retention.lengths[j], encoder.sequence_length
            keep = math.ceil(l_j * length / n)
            if encoder.relative_retention:
                budget = [math.ceil(l_j * int(n_b) / n) for n_b in real_tokens]
        out[f"attention_masks_{j}"] = mask
        step = reference_encoder_layer(layer, x, mask, keep, budget)
        x, mask = step["hidden"], step["attention_mask"]
        out[f"significance_{j}"] = step["significance"]
    out.update(sequence_output=x, attention_mask=mask, pooled_output=np.tanh(_dense(x[:, 0], encoder.pooler)))
    return out


def reference_classifier(model, inputs):
    """float (B, num_classes) logits (dropout is off at inference)."""
    return _dense(reference_encoder(model.encoder, inputs)["pooled_output"], model.head)


def widened(inputs):
    """NumPy copies of call inputs, floats widened (exactly) to float64 from any precision."""
    out = {}
    for key, value in inputs.items():
        tensor = tf.convert_to_tensor(value)
        out[key] = (tf.cast(tensor, tf.float64) if tensor.dtype.is_floating else tensor).numpy()
    return out
