"""The deployment kit: the files for the real TF Serving parse with TF Serving's protos, deploy/k8s.yaml
has the objects, ports and probe docs/deploy.md describes, and `powerbert serve` serves the kit's files.
"""

import argparse
import os
import re
import urllib.request

import pytest

from serving.batching import BatchingParameters
from serving.config_protos import BatchingParametersProto, ConfigError, ModelServerConfig, MonitoringConfig, \
    read_text_proto
from serving.deploy_kit import BATCHING_FILE, MODELS_FILE, MONITORING_FILE, merged_config, write_files, \
    write_serving_config
from serving.metrics import DEFAULT_PATH, prometheus_path
from serving.model_config import VersionPolicy, read_model_config
from serving.rest_server import add_serve_parser, options_from_args
from tests.test_model_config import save_toy
from tests.test_rest_server import ServerThread, build_app, client_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "k8s.yaml")
# What deploy/k8s.yaml's ConfigMap says it holds.
K8S_MODELS = {"sst2": "/models/sst2"}
K8S_BATCHING = BatchingParameters(max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=2)


def test_every_written_file_parses_with_tf_servings_protos(tmp_path):
    paths = write_serving_config(tmp_path / "config", {"sst2": "/models/sst2", "mrpc": "/models/mrpc"},
                                 BatchingParameters(max_batch_size=32, batch_timeout_micros=2000,
                                                    max_enqueued_batches=20, num_batch_threads=4))
    assert sorted(os.listdir(tmp_path / "config")) == sorted([MODELS_FILE, BATCHING_FILE, MONITORING_FILE])
    models = read_text_proto(paths[MODELS_FILE], ModelServerConfig).model_config_list.config
    assert [(m.name, m.base_path, m.model_platform) for m in models] == [
        ("sst2", "/models/sst2", "tensorflow"), ("mrpc", "/models/mrpc", "tensorflow")]
    assert [spec.name for spec in read_model_config(paths[MODELS_FILE])] == ["sst2", "mrpc"]
    batching = read_text_proto(paths[BATCHING_FILE], BatchingParametersProto)
    assert (batching.max_batch_size.value, batching.batch_timeout_micros.value, batching.max_enqueued_batches.value,
            batching.num_batch_threads.value) == (32, 2000, 20, 4)
    assert read_text_proto(paths[MONITORING_FILE], MonitoringConfig).prometheus_config.enable
    assert prometheus_path(paths[MONITORING_FILE]) == DEFAULT_PATH


def test_refused_configs_leave_no_file(tmp_path):
    with pytest.raises(ConfigError, match=r"models.config: Expected model a to have an absolute path"):
        write_serving_config(tmp_path, {"a": "models/a"})
    with pytest.raises(ValueError, match="REST URL"):
        write_serving_config(tmp_path, {"a/b": "/models/a"})
    assert os.listdir(tmp_path) == []


def test_powerbert_serve_serves_the_kits_files(tmp_path):
    save_toy(tmp_path / "models" / "toy", 1)
    paths = write_serving_config(tmp_path / "config", {"toy": str(tmp_path / "models" / "toy")},
                                 BatchingParameters(max_batch_size=8, num_batch_threads=1))
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model_config_file", paths[MODELS_FILE], "--enable_batching",
                              "--batching_parameters_file", paths[BATCHING_FILE],
                              "--monitoring_config_file", paths[MONITORING_FILE]])
    options = options_from_args(args)
    assert (options.batching.max_batch_size, options.batching.num_batch_threads) == (8, 1)
    with ServerThread(build_app(None, options)) as url:
        assert client_for(url, "toy").predict(instances=[0.0]) == {"predictions": [1.0]}
        assert b":tensorflow:serving:request_count" in urllib.request.urlopen(url + DEFAULT_PATH).read()


def test_k8s_config_map_is_what_the_kit_writes(tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: deploy/k8s.yaml is not checked")
    with open(K8S) as f:
        docs = {doc["kind"]: doc for doc in yaml.safe_load_all(f)}
    paths = write_serving_config(tmp_path, K8S_MODELS, K8S_BATCHING)
    data = docs["ConfigMap"]["data"]
    assert sorted(data) == sorted(paths)
    for name, path in paths.items():
        with open(path) as f:
            assert data[name] == f.read(), name


def test_k8s_objects_ports_and_probe():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: deploy/k8s.yaml is not checked")
    with open(K8S) as f:
        docs = list(yaml.safe_load_all(f))
    assert [doc["kind"] for doc in docs] == ["ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"]
    deployment, service = docs[2], docs[3]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"] == service["spec"]["selector"]
    container, = pod["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving")
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {(8500, 8500), (8501, 8501)}
    probe = container["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == (f"/v1/models/{next(iter(K8S_MODELS))}", 8501)
    flags = dict(arg.lstrip("-").split("=", 1) if "=" in arg else (arg.lstrip("-"), None) for arg in container["args"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert flags["model_config_file"] == f"{mounts['config']}/{MODELS_FILE}"
    assert flags["batching_parameters_file"] == f"{mounts['config']}/{BATCHING_FILE}"
    assert flags["monitoring_config_file"] == f"{mounts['config']}/{MONITORING_FILE}"
    assert "enable_batching" in flags
    assert all(path.startswith(mounts["models"] + "/") for path in K8S_MODELS.values())
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == DEFAULT_PATH and annotations["prometheus.io/port"] == "8501"


def test_docs_docker_lines_use_the_kits_files():
    with open(os.path.join(ROOT, "docs", "deploy.md")) as f:
        text = f.read()
    runs = re.findall(r"docker run[^`]*?(?=\n```)", text)
    images = [re.search(r"\s(tensorflow/serving\S*)\s", run).group(1) for run in runs]
    assert images == ["tensorflow/serving", "tensorflow/serving", "tensorflow/serving:latest-gpu"]
    for run in runs:
        for flag in (f"--model_config_file=/config/{MODELS_FILE}", f"--batching_parameters_file=/config/{BATCHING_FILE}",
                     f"--monitoring_config_file=/config/{MONITORING_FILE}", "--enable_batching"):
            assert flag in run
    assert "--xla_cpu_compilation_enabled=true" in runs[1] and "--gpus all" in runs[2]


def test_merged_config_keeps_other_models_and_their_policies(tmp_path):
    (tmp_path / MODELS_FILE).write_text(
        'model_config_list { config { name: "mrpc" base_path: "/models/mrpc" model_platform: "tensorflow"\n'
        '  model_version_policy { specific { versions: 1 versions: 2 } }\n'
        '  version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }\n'
        'config { name: "sst2" base_path: "/old/sst2" model_platform: "tensorflow"\n'
        '  version_labels { key: "stable" value: 3 } } }\n')
    (tmp_path / BATCHING_FILE).write_text("max_batch_size { value: 16 }\nnum_batch_threads { value: 3 }\n")
    config, batching = merged_config(str(tmp_path), "sst2", "/models/sst2", {"batch_timeout_micros": 500})
    write_files(str(tmp_path), config, batching)
    mrpc, sst2 = read_model_config(str(tmp_path / MODELS_FILE))
    assert (mrpc.base_path, mrpc.policy, mrpc.labels) == (
        "/models/mrpc", VersionPolicy("specific", versions=(1, 2)), (("canary", 2), ("stable", 1)))
    assert (sst2.base_path, sst2.labels) == ("/models/sst2", (("stable", 3),))
    assert (batching.max_batch_size, batching.num_batch_threads, batching.batch_timeout_micros,
            batching.max_enqueued_batches) == (16, 3, 500, 10)  # 10: TF Serving's default
    config, _ = merged_config(str(tmp_path), "imdb", "/models/imdb")
    assert [model.name for model in config.model_config_list.config] == ["mrpc", "sst2", "imdb"]


def test_merged_config_refuses_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="Expected model a to have an absolute path"):
        merged_config(str(tmp_path), "a", "models/a")
    (tmp_path / MODELS_FILE).write_text('model_config_list { config { name: "x" } }\n')
    with pytest.raises(ConfigError, match="model x has no base_path"):
        merged_config(str(tmp_path), "a", "/models/a")
    (tmp_path / MODELS_FILE).unlink()
    (tmp_path / BATCHING_FILE).write_text("max_batch_size: 16\n")
    with pytest.raises(ConfigError, match="not a valid tensorflow.serving.BatchingParameters"):
        merged_config(str(tmp_path), "a", "/models/a")
    with pytest.raises(ValueError, match="num_batch_threads must be >= 1"):
        merged_config(str(tmp_path / "new"), "a", "/models/a", {"num_batch_threads": 0})
    assert sorted(os.listdir(tmp_path)) == [BATCHING_FILE]


def test_cli_export_puts_the_model_into_the_kits_files_and_serve_answers(tmp_path, capsys):
    from powerbert_cli.main import main
    from tests.test_export import TINY_N, tiny_classifier
    from training.config import resolve_config
    from training.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    run.start(resolve_config("sst2", "quick", max_length=TINY_N))
    os.makedirs(run.step_dir("finetune"))
    tiny_classifier(retention=None).save(run.model_path("finetune"))
    models, config = tmp_path / "models", tmp_path / "config"
    argv = ["export", str(run.path), "--serving-config", str(config)]
    assert main(argv + ["--base", str(models / "sst2"), "--serving-base-path", str(models / "sst2"),
                        "--max-batch-size", "8", "--num-batch-threads", "1"]) == 0
    assert "model sst2 (base path" in capsys.readouterr().out
    assert main(argv + ["--base", str(models / "canary"), "--serving-base-path", str(models / "canary")]) == 0
    assert [(spec.name, spec.base_path) for spec in read_model_config(str(config / MODELS_FILE))] == [
        ("sst2", str(models / "sst2")), ("canary", str(models / "canary"))]
    # Without --serving-base-path the entry is for the container layout of docs/deploy.md.
    assert main(argv + ["--base", str(models / "sst2")]) == 0
    assert read_model_config(str(config / MODELS_FILE))[0].base_path == "/models/sst2"
    assert sorted(os.listdir(models / "sst2")) == ["1", "2"]

    # A relative base path is refused before anything is exported.
    assert main(argv + ["--base", str(models / "sst2"), "--serving-base-path", "models/sst2"]) == 2
    assert "Expected model sst2 to have an absolute path" in capsys.readouterr().err
    assert main(["export", str(run.path), "--base", str(models / "sst2"), "--num-batch-threads", "2"]) == 2
    assert "--num-batch-threads is for the deployment kit: add --serving-config DIR" in capsys.readouterr().err
    assert sorted(os.listdir(models / "sst2")) == ["1", "2"]

    config, batching = merged_config(str(config), "sst2", str(models / "sst2"))
    write_files(str(tmp_path / "config"), config, batching)
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    options = options_from_args(parser.parse_args(
        ["serve", "--model_config_file", str(tmp_path / "config" / MODELS_FILE), "--enable_batching",
         "--batching_parameters_file", str(tmp_path / "config" / BATCHING_FILE)]))
    assert (options.batching.max_batch_size, options.batching.num_batch_threads) == (8, 1)
    ids = [2, 5, 7, 3] + [0] * (TINY_N - 4)  # [CLS] good movie [SEP], padded
    instance = {"input_ids": ids, "attention_mask": [int(i > 0) for i in ids], "token_type_ids": [0] * TINY_N}
    with ServerThread(build_app(None, options)) as url:
        answers = {name: client_for(url, name).predict(instances=[instance]) for name in ("sst2", "canary")}
        status = client_for(url, "sst2").status()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE")]
    assert answers["sst2"] == answers["canary"] and answers["sst2"]["predictions"][0]["label"] in (0, 1)
