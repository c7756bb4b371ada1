"""KerasHub import and export, checked against KerasHub itself.

The reference backbone is filled by KerasHub's own Hugging Face converter
(`BertBackbone.from_preset(<local HF directory>)`, offline), so our name mapping is compared with
an independent one; the Hugging Face goldens of test_encoder_minilm are a second reference.
"""

import dataclasses
import json
import os

import h5py
import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import powerbert_tf as pb
from powerbert_tf.checkpoints import read_keras_hub, save_keras_hub_preset, to_keras_hub
from powerbert_tf.checkpoints.keras_hub import google_tensors
from powerbert_tf.presets import preset_path

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "minilm_hf_outputs.npz")
KINDS = ("single", "pair")
TOLERANCE = 1e-4
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{i}" for i in range(27)]


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def reference_backbone():
    """MiniLM in a KerasHub BertBackbone, filled by KerasHub's converter, not by our mapping."""
    return keras_hub.models.BertBackbone.from_preset(preset_path("minilm-l6"))


@pytest.fixture(scope="module")
def minilm_classifier_weights():
    """MiniLM with a random 3-class head (large enough that 1e-4 on the logits means something),
    its vocabulary, and KerasHub's activation, so KerasHub can compute exactly what it computes."""
    weights = pb.PowerBertClassifier.from_pretrained("minilm-l6", num_classes=3).bert_weights(
        vocab=pb.load_tokenizer("minilm-l6").vocab, lower_case=True)
    rng = np.random.default_rng(0)
    return dataclasses.replace(
        weights, config=dataclasses.replace(weights.config, hidden_act="gelu_new"),
        head_kernel=rng.normal(size=weights.head_kernel.shape).astype(np.float32),
        head_bias=rng.normal(size=weights.head_bias.shape).astype(np.float32))


@pytest.fixture(scope="module")
def ours(minilm_classifier_weights):
    return pb.PowerBertClassifier.from_bert_weights(minilm_classifier_weights)


@pytest.fixture(scope="module")
def exported(minilm_classifier_weights):
    return to_keras_hub(minilm_classifier_weights, sequence_length=48)


@pytest.fixture
def tiny_backbone():
    return keras_hub.models.BertBackbone(vocabulary_size=len(TINY_VOCAB), num_layers=2, num_heads=2,
                                         hidden_dim=16, intermediate_dim=48, max_sequence_length=32)


def our_inputs(golden, kind):
    return {name: golden[f"{kind}_{name}"] for name in ("input_ids", "attention_mask", "token_type_ids")}


def keras_hub_inputs(golden, kind):
    return {"token_ids": golden[f"{kind}_input_ids"], "segment_ids": golden[f"{kind}_token_type_ids"],
            "padding_mask": golden[f"{kind}_attention_mask"]}


def encoder_differences(weights, reference, golden, kind):
    """Max abs differences (sequence output at real positions, pooled output) of our encoder on
    `weights` from `reference` (dict with the two outputs)."""
    out = pb.PowerBertClassifier.from_bert_weights(weights).encoder(our_inputs(golden, kind))
    real = golden[f"{kind}_attention_mask"].astype(bool)
    sequence = np.abs(out["sequence_output"].numpy() - np.asarray(reference["sequence_output"]))[real]
    pooled = np.abs(out["pooled_output"].numpy() - np.asarray(reference["pooled_output"]))
    return sequence.max(), pooled.max()


def logits_difference(ours, keras_hub_model, golden, kind="pair"):
    a = ours(our_inputs(golden, kind)).numpy()
    b = keras.ops.convert_to_numpy(keras_hub_model(keras_hub_inputs(golden, kind)))
    return np.abs(a - b).max()


def golden_outputs(golden, kind):
    return {"sequence_output": golden[f"{kind}_sequence_output"],
            "pooled_output": golden[f"{kind}_pooled_output"]}


@pytest.mark.parametrize("kind", KINDS)
def test_import_computes_what_the_keras_hub_backbone_computes(reference_backbone, golden, kind):
    weights = read_keras_hub(reference_backbone)
    assert weights.config.hidden_act == "gelu_new" and weights.config.layer_norm_eps == 1e-12
    assert not weights.has_head and weights.vocab is None
    reference = reference_backbone(keras_hub_inputs(golden, kind))
    sequence, pooled = encoder_differences(weights, reference, golden, kind)
    assert sequence <= TOLERANCE and pooled <= TOLERANCE, (sequence, pooled)


@pytest.mark.parametrize("kind", KINDS)
def test_imported_weights_are_hugging_faces_and_only_the_activation_differs(reference_backbone, golden,
                                                                            kind):
    weights = read_keras_hub(reference_backbone)
    exact = dataclasses.replace(weights, config=dataclasses.replace(weights.config, hidden_act="gelu"))
    sequence, pooled = encoder_differences(exact, golden_outputs(golden, kind), golden, kind)
    assert sequence <= TOLERANCE and pooled <= TOLERANCE, (sequence, pooled)
    # KerasHub's BERT, fed Hugging Face's exact-GELU MiniLM, computes something else.
    approximate_sequence, _ = encoder_differences(weights, golden_outputs(golden, kind), golden, kind)
    assert approximate_sequence > 1e-3


def test_export_and_back_in_memory(minilm_classifier_weights, ours, exported, golden):
    assert isinstance(exported, keras_hub.models.BertTextClassifier)
    assert logits_difference(ours, exported, golden) <= TOLERANCE
    back = read_keras_hub(exported)
    assert_same_weights(back, minilm_classifier_weights)
    assert logits_difference(pb.PowerBertClassifier.from_bert_weights(back), exported, golden) <= TOLERANCE


def test_round_trip_through_a_keras_file(minilm_classifier_weights, ours, exported, golden, tmp_path):
    path = str(tmp_path / "classifier.keras")
    exported.save(path)
    back = read_keras_hub(path)
    assert_same_weights(back, minilm_classifier_weights)
    assert logits_difference(ours, keras.saving.load_model(path, compile=False), golden) <= TOLERANCE


def test_round_trip_through_a_preset_directory(minilm_classifier_weights, ours, golden, tmp_path):
    directory = save_keras_hub_preset(minilm_classifier_weights, str(tmp_path / "preset"), sequence_length=48)
    loaded = keras_hub.models.BertTextClassifier.from_preset(directory)  # offline: a local directory
    assert logits_difference(ours, loaded, golden) <= TOLERANCE
    back = read_keras_hub(directory)
    assert_same_weights(back, minilm_classifier_weights)
    assert logits_difference(pb.PowerBertClassifier.from_bert_weights(back), loaded, golden) <= TOLERANCE


def assert_same_weights(back, weights):
    assert back.config == weights.config and sorted(back.tensors) == sorted(weights.tensors)
    for name, value in weights.tensors.items():
        np.testing.assert_array_equal(back.tensors[name], value, err_msg=name)
    np.testing.assert_array_equal(back.head_kernel, weights.head_kernel)
    np.testing.assert_array_equal(back.head_bias, weights.head_bias)
    assert back.vocab == weights.vocab and back.lower_case == weights.lower_case


def test_headless_weights_make_a_backbone_preset_with_its_tokenizer(tiny_backbone, tmp_path):
    weights = dataclasses.replace(read_keras_hub(tiny_backbone), vocab=tuple(TINY_VOCAB), lower_case=False)
    directory = save_keras_hub_preset(weights, str(tmp_path / "backbone"))
    assert isinstance(keras_hub.models.BertBackbone.from_preset(directory), keras_hub.models.BertBackbone)
    back = read_keras_hub(directory)
    assert not back.has_head and back.vocab == weights.vocab and back.lower_case is False
    for name, value in weights.tensors.items():
        np.testing.assert_array_equal(back.tensors[name], value, err_msg=name)


def test_vocabulary_without_mask_token_is_refused(tiny_backbone):
    vocab = tuple(t if t != "[MASK]" else "word-mask" for t in TINY_VOCAB)
    weights = dataclasses.replace(read_keras_hub(tiny_backbone), vocab=vocab,
                                  head_kernel=np.zeros((16, 2), np.float32), head_bias=np.zeros(2, np.float32))
    with pytest.raises(pb.CheckpointError, match="BertTokenizer rejects the vocabulary.*MASK"):
        to_keras_hub(weights)


def test_exact_gelu_is_exported_only_when_asked(minilm_classifier_weights, golden):
    weights = dataclasses.replace(minilm_classifier_weights, config=dataclasses.replace(
        minilm_classifier_weights.config, hidden_act="gelu"))
    with pytest.raises(pb.CheckpointError, match="tanh approximation of GELU.*allow_gelu_approximation"):
        to_keras_hub(weights)
    approximated = to_keras_hub(weights, allow_gelu_approximation=True)
    difference = logits_difference(pb.PowerBertClassifier.from_bert_weights(weights), approximated, golden)
    assert TOLERANCE < difference < 0.05
    assert read_keras_hub(approximated).config.hidden_act == "gelu_new"


@pytest.mark.parametrize("kind", KINDS)
def test_keras_hub_preprocessor_gives_our_token_ids(exported, golden, kind):
    texts = (golden["single_texts"],) if kind == "single" else (golden["pair_a"], golden["pair_b"])
    length = golden[f"{kind}_input_ids"].shape[1]
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(exported.preprocessor.tokenizer,
                                                                   sequence_length=length)
    theirs = preprocessor(x=tuple(tf.constant(t) for t in texts))
    mine = pb.load_tokenizer("minilm-l6")(*texts, max_length=length)
    for our_name, their_name in (("input_ids", "token_ids"), ("token_type_ids", "segment_ids"),
                                 ("attention_mask", "padding_mask")):
        np.testing.assert_array_equal(np.asarray(theirs[their_name]).astype(np.int32), mine[our_name].numpy())
        np.testing.assert_array_equal(mine[our_name].numpy(), golden[f"{kind}_{our_name}"])


def test_keras_hub_tokenizer_differs_on_sharp_s_and_non_breaking_space(exported):
    """Pinned so the docs stay true: KerasHub case-folds ("ß" -> "ss") and does not split on U+00A0;
    Hugging Face's BERT and ours lower-case and split on every Unicode space."""
    texts = ["Straße", "with\u00a0odd", "Crème brûlée at the Café, NAÏVE!"]
    theirs = [np.asarray(ids).tolist() for ids in exported.preprocessor.tokenizer(texts)]
    mine = pb.load_tokenizer("minilm-l6").wordpiece_ids(tf.constant(texts)).to_list()
    assert [a != b for a, b in zip(theirs, mine)] == [True, True, False]


def test_unknown_keras_hub_variable_is_named(tiny_backbone):
    arrays = {v.path: keras.ops.convert_to_numpy(v) for v in tiny_backbone.weights}
    arrays["transformer_layer_0/extra_scale"] = np.ones(16, np.float32)
    with pytest.raises(pb.CheckpointError, match="unexpected KerasHub variable 'transformer_layer_0/extra_scale'"):
        google_tensors(arrays, "test")


def test_missing_variable_is_named(tiny_backbone):
    weights = read_keras_hub(tiny_backbone)
    del weights.tensors["bert/encoder/layer_1/attention/self/value/bias"]
    with pytest.raises(pb.CheckpointError, match="'bert/encoder/layer_1/attention/self/value/bias' is missing"):
        to_keras_hub(weights)


def test_misshaped_variable_is_named_with_both_shapes(tiny_backbone):
    weights = read_keras_hub(tiny_backbone)
    wrong = dataclasses.replace(weights, config=dataclasses.replace(weights.config, intermediate_size=40))
    with pytest.raises(pb.CheckpointError,
                       match=r"'bert/encoder/layer_0/intermediate/dense/kernel' has shape \(16, 48\), "
                             r"the config implies \(16, 40\)"):
        to_keras_hub(wrong)


def test_preset_whose_config_does_not_fit_its_weights_names_the_variable(tiny_backbone, tmp_path):
    directory = str(tmp_path / "preset")
    tiny_backbone.save_to_preset(directory)
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    config["config"]["intermediate_dim"] = 40
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(pb.CheckpointError, match=r"variable.shape=\(16, 40\), Received: value.shape=\(16, 48\)"
                                                 r".*transformer_layer_0/feedforward_intermediate_dense/kernel"):
        read_keras_hub(directory)


def test_preset_with_a_variable_deleted_is_refused(tiny_backbone, tmp_path):
    directory = str(tmp_path / "preset")
    tiny_backbone.save_to_preset(directory)
    with h5py.File(os.path.join(directory, "model.weights.h5"), "a") as f:
        del f["layers/transformer_encoder/_feedforward_intermediate_dense/vars/0"]
    with pytest.raises(pb.CheckpointError, match="'feedforward_intermediate_dense' expected 2 variables, "
                                                 "but received 1"):
        read_keras_hub(directory)


def test_softmax_classifier_cannot_be_represented(tiny_backbone):
    classifier = keras_hub.models.BertTextClassifier(tiny_backbone, num_classes=2, activation="softmax")
    with pytest.raises(pb.CheckpointError, match="applies 'softmax'.*cannot represent it"):
        read_keras_hub(classifier)


def test_what_is_not_a_keras_hub_bert_is_refused(tmp_path):
    with pytest.raises(pb.CheckpointError, match="a Dense, not a KerasHub BertBackbone"):
        read_keras_hub(keras.layers.Dense(2))
    with pytest.raises(pb.CheckpointError, match="does not describe a KerasHub BertBackbone"):
        read_keras_hub(preset_path("minilm-l6"))  # a Hugging Face directory
    with pytest.raises(pb.CheckpointError, match="neither a .keras file nor a KerasHub preset"):
        read_keras_hub(str(tmp_path / "nothing.h5"))
