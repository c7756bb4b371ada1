"""TF Serving's --model_config_file: several models, version policies, version labels, reloads and
refused files, over REST (in-process servers on 127.0.0.1, as in test_rest_server.py).

`toy` is a base path of versions 1, 2, 3 whose `serving_default` answers `x * 0.5 + version`, so a
prediction at 0 tells which version served it; `tiny` is a PoWER-BERT export (`export_tiny`).
"""

import argparse
import os

import pytest
import tensorflow as tf

from serving.client import ErrorResponse
from serving.config_protos import ConfigError
from serving.model_config import ModelSpec, VersionPolicy, check_labels, read_model_config
from serving.model_store import ModelStore
from serving.rest_server import add_serve_parser, options_from_args, serve_main
from tests.serving_fixtures import export_tiny
from tests.test_rest_server import ServerThread, ServingOptions, build_app, client_for, wait_for


class _Affine(tf.Module):
    def __init__(self, bias):
        super().__init__()
        self.bias = float(bias)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x):
        return {"y": x * 0.5 + self.bias}


def save_toy(base, version):
    module = _Affine(version)
    tf.saved_model.save(module, os.path.join(base, str(version)), signatures={"serving_default": module.__call__})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("config-models") / "toy"
    for version in (1, 2, 3):
        save_toy(base, version)
    return base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("config-tiny") / "tiny"
    export_tiny(base, version=1)
    return base


def model(name, base, extra=""):
    return f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {extra} }}\n'


def write_config(path, *models):
    """Writes a ModelServerConfig atomically (a poll never reads half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write("model_config_list {\n" + "".join(models) + "}\n")
    os.replace(tmp, path)
    return str(path)


def served_at_zero(client, path):
    return client.request("POST", path, {"instances": [0.0]})["predictions"][0]


def available(client, name):
    try:
        rows = client.request("GET", f"/v1/models/{name}")["model_version_status"]
    except ErrorResponse:
        return None
    return sorted(int(r["version"]) for r in rows if r["state"] == "AVAILABLE")


# === Serving a config file ===

def test_two_models_and_version_labels_over_rest(tmp_path, toy, tiny):
    config = write_config(tmp_path / "models.config", model("tiny", tiny), model(
        "toy", toy, 'model_version_policy { specific { versions: 1 versions: 2 } } '
                    'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'))
    app = build_app(None, ServingOptions(poll_seconds=0, model_config_file=config))
    with ServerThread(app) as url:
        client = client_for(url, "toy")
        assert served_at_zero(client, "/v1/models/toy/labels/stable:predict") == 1.0
        assert served_at_zero(client, "/v1/models/toy/labels/canary:predict") == 2.0
        assert served_at_zero(client, "/v1/models/toy/versions/1:predict") == 1.0
        assert served_at_zero(client, "/v1/models/toy/versions/2:predict") == 2.0
        assert served_at_zero(client, "/v1/models/toy:predict") == 2.0  # Latest: the highest served
        assert client.request("GET", "/v1/models/toy/labels/stable")["model_version_status"][0]["version"] == "1"
        assert client.request("GET", "/v1/models/toy/labels/canary/metadata")["model_spec"]["version"] == "2"
        with pytest.raises(ErrorResponse) as e:
            served_at_zero(client, "/v1/models/toy/versions/3:predict")  # on disk, not in the policy
        assert (e.value.status, e.value.message) == (404, "Servable not found for request: Specific(toy, 3)")
        with pytest.raises(ErrorResponse) as e:
            served_at_zero(client, "/v1/models/toy/labels/beta:predict")
        assert (e.value.status, e.value.message) == (400, "Unrecognized servable version label: beta")
        rows = client_for(url, "tiny").predict(instances=["the movie was good"], signature_name="classify_text")
        assert rows["predictions"][0]["label_name"] in ("class_0", "class_1")
        assert app.state.server.stats()["model_config"] == {"file": config, "poll_seconds": 0, "reloads": 0,
                                                            "error": None}


def test_version_policies_serve_the_versions_tf_serving_does(tmp_path, toy):
    config = write_config(
        tmp_path / "models.config",
        model("default", toy),
        model("latest2", toy, "model_version_policy { latest { num_versions: 2 } }"),
        model("all", toy, "model_version_policy { all {} }"),
        model("specific", toy, "model_version_policy { specific { versions: 1 versions: 3 versions: 7 } }"))
    with ServerThread(build_app(None, ServingOptions(poll_seconds=0, model_config_file=config))) as url:
        client = client_for(url, "toy")
        assert {name: available(client, name) for name in ("default", "latest2", "all", "specific")} == {
            "default": [3], "latest2": [2, 3], "all": [1, 2, 3], "specific": [1, 3]}
        assert served_at_zero(client, "/v1/models/specific/versions/1:predict") == 1.0
        assert served_at_zero(client, "/v1/models/latest2:predict") == 3.0


def test_config_file_edited_while_serving(tmp_path, toy):
    path = tmp_path / "models.config"
    config = write_config(path, model("toy", toy))
    app = build_app(None, ServingOptions(poll_seconds=0, model_config_file=config, model_config_poll_seconds=0.1))
    server = app.state.server

    def config_error():
        return server.stats()["model_config"]["error"]

    with ServerThread(app) as url:
        client = client_for(url, "toy")
        assert available(client, "toy") == [3] and available(client, "more") is None

        write_config(path, model("toy", toy), model("more", toy, "model_version_policy { all {} }"))
        wait_for(lambda: available(client, "more") == [1, 2, 3], 20, "the added model")
        assert served_at_zero(client, "/v1/models/more/versions/1:predict") == 1.0

        # Refused while serving: the previous config keeps serving, the error is logged and shown.
        write_config(path, model("toy", toy), model("toy", toy))
        wait_for(lambda: config_error(), 20, "the duplicate name to be refused")
        assert config_error() == f"{config}: Illegal to list model toy multiple times in config list"
        path.write_text("model_config_list { config { name: 'toy' base_pth: '/x' } }")
        wait_for(lambda: "base_pth" in (config_error() or ""), 20, "the unknown field to be refused")
        write_config(path, model("toy", toy, 'version_labels { key: "old" value: 1 }'))
        wait_for(lambda: "Request to assign label" in (config_error() or ""), 20, "the label to be refused")
        assert config_error() == (f"{config}: Request to assign label to version 1 of model toy, which is not "
                                  "currently available for inference")
        assert available(client, "toy") == [3] and available(client, "more") == [1, 2, 3]
        assert served_at_zero(client, "/v1/models/more/versions/2:predict") == 2.0

        # A label on a version being served; the other model removed; the error cleared.
        write_config(path, model("toy", toy, 'version_labels { key: "current" value: 3 }'))
        wait_for(lambda: available(client, "more") is None, 20, "the removed model")
        assert served_at_zero(client, "/v1/models/toy/labels/current:predict") == 3.0
        assert config_error() is None and server.stats()["model_config"]["reloads"] == 2

        # A policy change: versions loaded before the old one goes, labels kept.
        write_config(path, model("toy", toy, 'model_version_policy { specific { versions: 2 versions: 3 } } '
                                             'version_labels { key: "current" value: 3 }'))
        wait_for(lambda: available(client, "toy") == [2, 3], 20, "the new policy")
        assert served_at_zero(client, "/v1/models/toy/labels/current:predict") == 3.0


def test_label_for_an_unavailable_version_when_allowed(tmp_path, toy):
    config = write_config(tmp_path / "models.config", model("toy", toy, 'version_labels { key: "next" value: 9 }'))
    options = ServingOptions(poll_seconds=0, model_config_file=config, allow_unavailable_labels=True)
    with ServerThread(build_app(None, options)) as url:
        with pytest.raises(ErrorResponse) as e:
            served_at_zero(client_for(url, "toy"), "/v1/models/toy/labels/next:predict")
        assert (e.value.status, e.value.message) == (404, "Servable not found for request: Specific(toy, 9)")


def test_label_rules_are_tf_servings():
    spec = ModelSpec("m", "/m", labels=(("stable", 1),))
    assert check_labels([spec], lambda name: {1, 2}, {}) == {"m": {"stable": 1}}
    message = "Request to assign label to version 1 of model m, which is not currently available for inference"
    with pytest.raises(ConfigError, match=message):
        check_labels([spec], lambda name: {2}, {})
    # Allowed: a new label, or one that stays on its version; never moving a label onto an unavailable one.
    assert check_labels([spec], lambda name: set(), {}, allow_unavailable=True) == {"m": {"stable": 1}}
    assert check_labels([spec], lambda name: set(), {"m": {"stable": 1}}, allow_unavailable=True)
    with pytest.raises(ConfigError, match=message):
        check_labels([spec], lambda name: {2}, {"m": {"stable": 2}}, allow_unavailable=True)


# === Refused files ===

BAD_CONFIGS = {
    "unparsable": ("model_config_list { config { name: 'a' ", "not a valid tensorflow.serving.ModelServerConfig"),
    "unknown field": ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tensorflow' "
                      "version_policy: 1 } }", 'has no field named "version_policy"'),
    "no base_path": ("model_config_list { config { name: 'a' model_platform: 'tensorflow' } }",
                     "model a has no base_path"),
    "relative base_path": ("model_config_list { config { name: 'a' base_path: 'models/a' model_platform: "
                           "'tensorflow' } }", "Expected model a to have an absolute path or URI"),
    "duplicate names": ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tensorflow' } "
                        "config { name: 'a' base_path: '/b' model_platform: 'tensorflow' } }",
                        "Illegal to list model a multiple times in config list"),
    "other platform": ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'pytorch' } }",
                       "Model a requests unsupported platform pytorch"),
    "no platform": ("model_config_list { config { name: 'a' base_path: '/a' } }",
                    "Illegal setting neither ModelServerConfig::model_type (deprecated) nor"),
    "custom config": ("custom_model_config { }", "does not yet support custom model config"),
    "missing file": (None, "cannot read"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_file_at_startup_is_refused(tmp_path, case):
    text, message = BAD_CONFIGS[case]
    path = tmp_path / "models.config"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as e:
        build_app(None, ServingOptions(model_config_file=str(path)))
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_serve_refuses_to_start_on_a_bad_config(tmp_path, toy, capsys, monkeypatch):
    import uvicorn

    def never(*args, **kwargs):
        raise AssertionError("a refused config must not open the port")

    monkeypatch.setattr(uvicorn, "run", never)
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    bad = tmp_path / "bad.config"
    bad.write_text(BAD_CONFIGS["duplicate names"][0])
    assert serve_main(parser.parse_args(["serve", "--model_config_file", str(bad), "--port", "1"])) == 2
    assert capsys.readouterr().err.strip() == \
        f"powerbert serve: {bad}: Illegal to list model a multiple times in config list"
    # A label on a version that does not load: refused once the models have loaded, before the port opens.
    label = write_config(tmp_path / "label.config", model("toy", toy, 'version_labels { key: "gone" value: 7 }'))
    assert serve_main(parser.parse_args(["serve", "--model_config_file", label, "--port", "1",
                                         "--file_system_poll_wait_seconds", "0"])) == 2
    assert capsys.readouterr().err.strip() == (f"powerbert serve: {label}: Request to assign label to version 7 "
                                               "of model toy, which is not currently available for inference")
    assert serve_main(parser.parse_args(["serve"])) == 2
    assert "--model_base_path or --model_config_file" in capsys.readouterr().err


def test_serve_flags(tmp_path):
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    args = parser.parse_args(["serve", "--model_config_file", "m.config", "--model_config_file_poll_wait_seconds",
                              "30", "--allow_version_labels_for_unavailable_models",
                              "--monitoring_config_file", str(monitoring)])
    options = options_from_args(args)
    assert (options.model_config_file, options.model_config_poll_seconds, options.allow_unavailable_labels,
            options.prometheus_path) == ("m.config", 30, True, "/metrics")


def test_read_model_config_policies(tmp_path):
    path = write_config(tmp_path / "m.config", model("a", "/a"), model(
        "b", "/b", 'model_version_policy { latest { num_versions: 3 } } version_labels { key: "x" value: 2 }'),
        model("c", "/c", "model_version_policy { specific { versions: 5 versions: 4 } }"))
    assert read_model_config(path) == [
        ModelSpec("a", "/a", VersionPolicy("latest", 1)),
        ModelSpec("b", "/b", VersionPolicy("latest", 3), (("x", 2),)),
        ModelSpec("c", "/c", VersionPolicy("specific", versions=(4, 5)))]
    (tmp_path / "empty.config").write_text("# nothing: TF Serving takes no action\n")
    assert read_model_config(str(tmp_path / "empty.config")) is None


# === The store's version policies (fake loader: no TensorFlow) ===

class _Loaded:
    def __init__(self, name, version, path, stats):
        self.version = version


def test_store_policies_load_before_unloading_and_skip_broken_versions(tmp_path):
    for version in (1, 2, 3):
        (tmp_path / str(version)).mkdir()
    broken, seen_serving = {3}, []

    def loader(name, version, path, stats):
        seen_serving.append(sorted(store.available_versions()))  # what served while this one loaded
        if version in broken:
            raise OSError(f"version {version} is corrupt")
        return _Loaded(name, version, path, stats)

    store = ModelStore("m", str(tmp_path), poll_seconds=0, loader=loader, policy=VersionPolicy("latest", 2))
    store.start()
    assert store.available_versions() == {1, 2}  # 3 fails: the next highest takes its place
    assert store.status(3)["model_version_status"][0]["state"] == "END"

    store.set_policy(VersionPolicy("specific", versions=(4,)))  # not on disk: keep serving what serves
    assert store.available_versions() == {1, 2}
    (tmp_path / "4").mkdir()
    seen_serving.clear()
    store.set_policy(VersionPolicy("specific", versions=(4,)))
    assert store.available_versions() == {4} and seen_serving == [[1, 2]]
    assert store.get().version == 4 and store.status(1)["model_version_status"][0]["state"] == "END"

    broken.clear()
    (tmp_path / "3" / "fixed").write_text("")  # files changed: retried
    store.set_policy(VersionPolicy("all"))
    assert store.available_versions() == {1, 2, 3, 4}
    with pytest.raises(Exception, match=r"Specific\(m, 9\)"):
        store.get(9)
