"""The tensorflow-text tokenizer against Hugging Face's (Python) `BertTokenizer` on real data."""

import os

import numpy as np
import pytest
import tensorflow as tf

import powerbert_tf as pb
from powerbert_tf.tokenizer import longest_first_lengths, only_first_lengths

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "tokenizer_hf_ids.npz")
OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
# (golden prefix, first texts, second texts, max_length)
CASES = [("sst2", "sst2_texts", None, 64), ("mrpc", "mrpc_a", "mrpc_b", 128),
         ("mrpc40", "mrpc_a", "mrpc_b", 40), ("extra", "extra_texts", None, 32),
         ("extrapair", "extrapair_a", "extrapair_b", 16)]


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def tokenizer():
    return pb.load_tokenizer("minilm-l6")


@pytest.mark.parametrize("prefix, first, second, max_length", CASES)
def test_ids_equal_hugging_face(golden, tokenizer, prefix, first, second, max_length):
    out = tokenizer(list(golden[first]), list(golden[second]) if second else None, max_length=max_length)
    for name in OUTPUTS:
        assert out[name].dtype == tf.int32
        np.testing.assert_array_equal(out[name].numpy(), golden[f"{prefix}_{name}"], err_msg=name)


def test_works_inside_tf_data(golden, tokenizer):
    texts = golden["sst2_texts"][:16]
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(8).map(lambda t: tokenizer(t, max_length=64))
    ids = np.concatenate([b["input_ids"].numpy() for b in ds])
    np.testing.assert_array_equal(ids, golden["sst2_input_ids"][:16])


def test_survives_saved_model_round_trip(golden, tokenizer, tmp_path):
    module = tf.Module()
    module.tokenizer = tokenizer
    module.encode = tf.function(lambda a, b: tokenizer(a, b, max_length=40),
                                input_signature=[tf.TensorSpec([None], tf.string)] * 2)
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    out = loaded.encode(tf.constant(golden["mrpc_a"][:8]), tf.constant(golden["mrpc_b"][:8]))
    np.testing.assert_array_equal(out["input_ids"].numpy(), golden["mrpc40_input_ids"][:8])


def test_longest_first_lengths_by_hand():
    # (10, 4) into 6: trim a to 4, tie -> trim b to 3, then a to 3.  (5, 5) into 7 -> (4, 3).
    a, b = longest_first_lengths([10, 5, 3, 2], [4, 5, 10, 2], [6, 7, 7, 9])
    np.testing.assert_array_equal(a.numpy(), [3, 4, 3, 2])
    np.testing.assert_array_equal(b.numpy(), [3, 3, 4, 2])


def test_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="max_length must be >= 3"):
        tokenizer(["a"], ["b"], max_length=2)
    with pytest.raises(TypeError, match="must be strings"):
        tokenizer([1, 2], max_length=8)


def test_bad_vocabularies():
    with pytest.raises(ValueError, match=r"repeated tokens: \['x'\]"):
        pb.BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "x", "y", "x"])
    with pytest.raises(ValueError, match="lacks the special tokens"):
        pb.BertTokenizer(["[PAD]", "[UNK]", "x"])


def test_only_first_lengths_by_hand():
    # Budget 10: (5, 3) fits; (20, 4) cuts the article to 10 - 4 = 6; (7, 12) cuts the second
    # to the budget and leaves the article nothing, as does a second of exactly 10; (0, 0) fits.
    a, b = only_first_lengths([5, 20, 7, 3, 0], [3, 4, 12, 10, 0], 10)
    np.testing.assert_array_equal(a.numpy(), [5, 6, 0, 0, 0])
    np.testing.assert_array_equal(b.numpy(), [3, 4, 10, 10, 0])


def test_only_first_keeps_the_whole_second_text(tokenizer):
    article = " ".join(["the quick brown fox jumps over the lazy dog"] * 5)
    question = "which animal was lazy in the story told here"
    first, second = (tokenizer.wordpiece_ids([t])[0].numpy() for t in (article, question))
    assert 16 // 2 < len(second) <= 16 - 3 < len(first)  # longest-first would cut the second text
    out = tokenizer([article], [question], max_length=16, truncation="only_first")
    kept = 16 - 3 - len(second)
    np.testing.assert_array_equal(
        out["input_ids"].numpy()[0],
        np.concatenate([[tokenizer.cls_id], first[:kept], [tokenizer.sep_id], second, [tokenizer.sep_id]]))
    np.testing.assert_array_equal(out["token_type_ids"].numpy()[0],
                                  [0] * (kept + 2) + [1] * (len(second) + 1))
    default = tokenizer([article], [question], max_length=16)
    assert (default["token_type_ids"].numpy()[0] == 1).sum() < len(second) + 1


def test_only_first_with_a_second_text_over_the_budget(tokenizer):
    second = tokenizer.wordpiece_ids(["one two three four five six seven eight nine ten"])[0].numpy()
    out = tokenizer(["an article"], ["one two three four five six seven eight nine ten"], max_length=8,
                    truncation="only_first")
    np.testing.assert_array_equal(out["input_ids"].numpy()[0],
                                  [tokenizer.cls_id, tokenizer.sep_id, *second[:5], tokenizer.sep_id])


def test_bad_truncation(tokenizer):
    with pytest.raises(ValueError, match=r"truncation must be one of \['longest_first', 'only_first'\], "
                                         r"got 'only_second'"):
        tokenizer(["a"], ["b"], max_length=8, truncation="only_second")


def test_multiple_choice_features_are_each_options_pair(tokenizer):
    articles = ["the cat sat on the mat and the dog sat too", "a dog"]
    questions = ["who sat ?", "what is it ?"]
    options = [["the cat", "the dog", "nobody", "a mat"], ["a cat", "a dog", "a mat", "it"]]
    features = tokenizer.multiple_choice(articles, questions, options, max_length=12)
    assert features["input_ids"].shape == (2, 4, 12)
    for b in range(2):
        for c in range(4):
            alone = tokenizer([articles[b]], [f"{questions[b]} {options[b][c]}"], max_length=12,
                              truncation="only_first")
            for name in features:
                np.testing.assert_array_equal(features[name][b, c], alone[name][0])
    # The long article gave way: the whole "who sat ? the cat" (5 tokens) is there, then [SEP].
    ids = features["input_ids"][0, 0].numpy()
    vocab = tokenizer.vocab
    assert [vocab[i] for i in ids] == ["[CLS]", "the", "cat", "sat", "on", "[SEP]", "who", "sat", "?",
                                       "the", "cat", "[SEP]"]
    with pytest.raises(ValueError, match=r"options must be a \(batch, choices\) tensor of strings"):
        tokenizer.multiple_choice(articles, questions, ["a", "b"], max_length=12)
