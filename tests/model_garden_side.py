"""The Model Garden side of the import/export tests, run by the Model Garden environment's Python
(`make modelgarden-env`: TensorFlow 2.20, tf-keras, tf-models-official), never by pytest itself.

    python tests/model_garden_side.py reference HF_DIR OUT_DIR
        Build a `tfm.nlp.networks.BertEncoder` the way TensorFlow's "fine-tune BERT with Model
        Garden" tutorial does (an `EncoderConfig` from a Model Garden `bert_config.json`), fill
        it with the Hugging Face weights in HF_DIR by this file's own mapping (independent of
        powerbert_tf's), put a seeded random 3-class `BertClassifier` head on it, and write
        OUT_DIR/{bert_config.json, vocab.txt, classifier/ckpt-*, encoder/ckpt-*, outputs.npz}.
    python tests/model_garden_side.py restore CONFIG CHECKPOINT EXPECTED_NPZ [CONFIG CHECKPOINT ...]
        Restore each checkpoint written by powerbert_tf into a new `BertClassifier` (and its
        `BertEncoder` alone), check every variable was matched, and print the largest absolute
        differences of logits and pooled output from EXPECTED_NPZ, one JSON line each.
"""

import json
import os
import shutil
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_models as tfm  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

NUM_CLASSES = 3


def build_classifier(config_dict):
    """(classifier, encoder) from a Model Garden `bert_config.json` dict, as the tutorial does.

    Model Garden's activation names have no exact GELU (its "gelu" is the tanh approximation),
    so a config saying "exact_gelu" builds `BertEncoder` directly with `tf.nn.gelu`.
    """
    if config_dict["hidden_activation"] == "exact_gelu":
        c = config_dict
        encoder = tfm.nlp.networks.BertEncoder(
            vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_layers=c["num_layers"],
            num_attention_heads=c["num_attention_heads"], inner_dim=c["intermediate_size"],
            inner_activation=lambda x: tf.nn.gelu(x, approximate=False),
            max_sequence_length=c["max_position_embeddings"], type_vocab_size=c["type_vocab_size"],
            dict_outputs=True)
    else:
        encoder = tfm.nlp.encoders.build_encoder(
            tfm.nlp.encoders.EncoderConfig({"type": "bert", "bert": config_dict}))
    classifier = tfm.nlp.models.BertClassifier(network=encoder, num_classes=NUM_CLASSES)
    classifier(model_inputs(np.ones((1, 4), np.int32), np.ones((1, 4), np.int32), np.zeros((1, 4), np.int32)))
    return classifier, encoder


def model_inputs(ids, mask, types):
    return {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask),
            "input_type_ids": tf.constant(types)}


def fixed_inputs(vocab_size):
    """Four rows of different real lengths (padding on the right), with a second segment."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, vocab_size, size=(4, 16)).astype(np.int32)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, length in enumerate((16, 11, 7, 3)):
        mask[row, :length] = 1
        types[row, length // 2:length] = 1
    ids[:, 0] = 101
    ids[mask == 0] = 0
    return ids, mask, types


def assign_hf_weights(encoder, hf, heads):
    """Copy HF `BertModel` tensors into the tfm encoder's layers (HF Linear weights are (out, in))."""
    h = hf["embeddings.word_embeddings.weight"].shape[1]
    d = h // heads
    encoder._embedding_layer.embeddings.assign(hf["embeddings.word_embeddings.weight"])
    encoder._position_embedding_layer._position_embeddings.assign(hf["embeddings.position_embeddings.weight"])
    encoder._type_embedding_layer.embeddings.assign(hf["embeddings.token_type_embeddings.weight"])
    encoder._embedding_norm_layer.gamma.assign(hf["embeddings.LayerNorm.weight"])
    encoder._embedding_norm_layer.beta.assign(hf["embeddings.LayerNorm.bias"])
    for j, block in enumerate(encoder._transformer_layers):
        p = f"encoder.layer.{j}."
        attention = block._attention_layer
        for name, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense)):
            dense.kernel.assign(hf[p + f"attention.self.{name}.weight"].T.reshape(h, heads, d))
            dense.bias.assign(hf[p + f"attention.self.{name}.bias"].reshape(heads, d))
        attention._output_dense.kernel.assign(hf[p + "attention.output.dense.weight"].T.reshape(heads, d, h))
        attention._output_dense.bias.assign(hf[p + "attention.output.dense.bias"])
        block._attention_layer_norm.gamma.assign(hf[p + "attention.output.LayerNorm.weight"])
        block._attention_layer_norm.beta.assign(hf[p + "attention.output.LayerNorm.bias"])
        block._intermediate_dense.kernel.assign(hf[p + "intermediate.dense.weight"].T)
        block._intermediate_dense.bias.assign(hf[p + "intermediate.dense.bias"])
        block._output_dense.kernel.assign(hf[p + "output.dense.weight"].T)
        block._output_dense.bias.assign(hf[p + "output.dense.bias"])
        block._output_layer_norm.gamma.assign(hf[p + "output.LayerNorm.weight"])
        block._output_layer_norm.beta.assign(hf[p + "output.LayerNorm.bias"])
    encoder._pooler_layer.kernel.assign(hf["pooler.dense.weight"].T)
    encoder._pooler_layer.bias.assign(hf["pooler.dense.bias"])


def outputs(classifier, encoder, ids, mask, types):
    inputs = model_inputs(ids, mask, types)
    encoded = encoder(inputs, training=False)
    return {"logits": classifier(inputs, training=False).numpy(),
            "pooled_output": encoded["pooled_output"].numpy(),
            "sequence_output": encoded["sequence_output"].numpy()}


def reference(hf_dir, out_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        hf_config = json.load(f)
    # The tutorial's bert_config.json keys; "gelu" there means tanh-approximate GELU.
    config_dict = {"vocab_size": hf_config["vocab_size"], "hidden_size": hf_config["hidden_size"],
                   "num_layers": hf_config["num_hidden_layers"],
                   "num_attention_heads": hf_config["num_attention_heads"],
                   "intermediate_size": hf_config["intermediate_size"], "hidden_activation": "gelu",
                   "dropout_rate": 0.1, "attention_dropout_rate": 0.1,
                   "max_position_embeddings": hf_config["max_position_embeddings"],
                   "type_vocab_size": hf_config["type_vocab_size"], "initializer_range": 0.02}
    tf.keras.utils.set_random_seed(0)
    classifier, encoder = build_classifier(config_dict)
    hf = {k.removeprefix("bert."): v for k, v in load_file(os.path.join(hf_dir, "model.safetensors")).items()}
    assign_hf_weights(encoder, hf, config_dict["num_attention_heads"])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bert_config.json"), "w") as f:
        json.dump(config_dict, f, indent=2)
    shutil.copy(os.path.join(hf_dir, "vocab.txt"), os.path.join(out_dir, "vocab.txt"))
    tf.train.Checkpoint(model=classifier).save(os.path.join(out_dir, "classifier", "ckpt"))
    tf.train.Checkpoint(encoder=encoder).save(os.path.join(out_dir, "encoder", "ckpt"))
    ids, mask, types = fixed_inputs(config_dict["vocab_size"])
    np.savez(os.path.join(out_dir, "outputs.npz"), input_ids=ids, attention_mask=mask,
             token_type_ids=types, **outputs(classifier, encoder, ids, mask, types))
    print(json.dumps({"written": sorted(os.listdir(out_dir))}))


def restore(config_path, checkpoint, expected_path):
    with open(config_path) as f:
        config_dict = json.load(f)
    classifier, encoder = build_classifier(config_dict)
    tf.train.Checkpoint(model=classifier).read(checkpoint).assert_consumed()
    expected = np.load(expected_path)
    ids, mask, types = expected["input_ids"], expected["attention_mask"], expected["token_type_ids"]
    got = outputs(classifier, encoder, ids, mask, types)
    lone_classifier, lone_encoder = build_classifier(config_dict)
    tf.train.Checkpoint(encoder=lone_encoder).read(checkpoint).assert_existing_objects_matched()
    lone = outputs(lone_classifier, lone_encoder, ids, mask, types)
    print(json.dumps({
        "logits_max_abs_diff": float(np.abs(got["logits"] - expected["logits"]).max()),
        "pooled_max_abs_diff": float(np.abs(got["pooled_output"] - expected["pooled_output"]).max()),
        "encoder_only_pooled_max_abs_diff": float(np.abs(lone["pooled_output"] - expected["pooled_output"]).max()),
        "tensorflow": tf.__version__, "tf_models": getattr(tfm, "__version__", "unknown")}))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "reference":
        reference(*arguments)
    else:  # one process for several checkpoints: TensorFlow starts once
        for start in range(0, len(arguments), 3):
            restore(*arguments[start:start + 3])
