"""`powerbert export --tflite` writes <version>/model.tflite; `powerbert serve --prefer_tflite_model`
serves it with the same request format as the SavedModel (TF Serving's flag of that name)."""

import os

import numpy as np
import pytest

from powerbert_tf import RetentionConfig
from serving.client import ErrorResponse, PredictClient
from serving.export import ExportError, export_saved_model, read_metadata
from serving.rest_server import ServerThread, ServingOptions, build_app
from serving.savedmodel import TFLITE_FILE
from serving.servable import Servable
from tests.conftest import random_inputs
from tests.serving_fixtures import TINY_N, TINY_RETENTION, tiny_classifier, tiny_tokenizer


def _export(base, model, **kwargs):
    return export_saved_model(model, tiny_tokenizer(), base=str(base), label_names=["neg", "pos"],
                              task_name="tiny", **kwargs)


@pytest.fixture(scope="module")
def relative_model():
    model = tiny_classifier(seed=4)
    return model.with_elimination(elimination="hard",
                                  retention=RetentionConfig(tuple(TINY_RETENTION), TINY_N, relative=True))


@pytest.fixture(scope="module")
def exported(relative_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("models") / "tiny"
    return base, _export(base, relative_model, tflite="float32", dynamic_length=True)


def _rows(x):
    return [{k: v[b].tolist() for k, v in x.items()} for b in range(len(x["input_ids"]))]


def test_export_writes_the_tflite_beside_the_saved_model(exported):
    _, version = exported
    assert os.path.isfile(os.path.join(version, TFLITE_FILE))
    assert os.path.isfile(os.path.join(version, "saved_model.pb"))
    assert read_metadata(version)["tflite"] == "float32"
    with pytest.raises(ExportError, match="tflite must be"):
        _export(exported[0].parent / "other", tiny_classifier(), tflite="fp8")


def test_preferred_tflite_serves_only_serving_default_with_the_same_answers(exported, relative_model):
    _, version = exported
    tflite = Servable("tiny", 1, version, prefer_tflite=True)
    saved = Servable("tiny", 1, version)
    assert (tflite.runtime, saved.runtime) == ("tflite", "saved_model")
    assert set(tflite.signatures) == {"serving_default"} and "classify_text" in saved.signatures
    assert set(tflite.signature_defs) == {"serving_default"}
    x = random_inputs(4, TINY_N, seed=2, min_len=2)
    longest = int(x["attention_mask"].sum(axis=1).max())
    x = {k: np.ascontiguousarray(v[:, :longest]) for k, v in x.items()}  # dynamic length
    want = relative_model(x).numpy()
    np.testing.assert_allclose(tflite.run("serving_default", x)["logits"], want, atol=1e-5)
    np.testing.assert_allclose(saved.run("serving_default", x)["logits"], want, atol=1e-5)


def test_server_flag_serves_the_tflite_over_rest(exported, relative_model):
    base, _ = exported
    x = random_inputs(3, TINY_N, seed=5, min_len=2)
    want = relative_model(x).numpy()
    for prefer in (True, False):
        app = build_app({"tiny": str(base)}, ServingOptions(poll_seconds=0, prefer_tflite_model=prefer))
        with ServerThread(app) as url:
            host, port = url.rsplit("/", 1)[-1].split(":")
            client = PredictClient(host, int(port), "tiny")
            got = client.predict(instances=_rows(x))["predictions"]
            np.testing.assert_allclose([row["logits"] for row in got], want, atol=1e-5)
            if prefer:  # the raw-text signature needs TF ops LiteRT does not have
                with pytest.raises(ErrorResponse, match="classify_text"):
                    client.predict(instances=[{"text": "good"}], signature_name="classify_text")


def test_int8_tflite_stays_close_to_float32(tmp_path):
    model = tiny_classifier(seed=4)
    version = _export(tmp_path / "int8", model, tflite="int8")
    x = random_inputs(8, TINY_N, seed=6, min_len=2)
    got = Servable("tiny", 1, version, prefer_tflite=True).run("serving_default", x)["logits"]
    want = model(x).numpy()
    float32 = _export(tmp_path / "float32", model, tflite="float32")
    size = lambda v: os.path.getsize(os.path.join(v, TFLITE_FILE))
    assert size(version) < 0.8 * size(float32)  # int8 weights (tensors of 1024+ values)
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())
