"""BERT architecture hyper-parameters, read from Hugging Face or Google BERT config files."""

import dataclasses
import json

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "relu": "relu", "tanh": "tanh"}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT encoder. Field names follow Google's `bert_config.json`."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; supported: {sorted(_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}")

    @property
    def keras_activation(self):
        """Name of the activation as `powerbert_tf.layers.encoder_layer` understands it."""
        return _ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_dict(cls, data):
        """Build from a HF `config.json` or Google `bert_config.json` dict (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        data.setdefault("layer_norm_eps", 1e-12)  # Google's files omit it; BERT used 1e-12.
        missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size") if n not in data]
        if missing:
            raise ValueError(f"BERT config is missing {missing}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json_file(cls, path):
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from err
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def to_dict(self):
        return dataclasses.asdict(self)
