"""The deployment kit: the flag files of the real TF Serving, written with TF Serving's own protos
and parsed back before they are kept (`docker run tensorflow/serving` and Kubernetes recipes in
docs/deploy.md and deploy/k8s.yaml).

`write_serving_config(directory, models, batching)` writes:
- `models.config`: a `ModelServerConfig` for `--model_config_file`, one model per name, platform
  `tensorflow`, TF Serving's default version policy (the latest version);
- `batching_parameters.txt`: a `BatchingParameters` for `--batching_parameters_file` (with
  `--enable_batching`);
- `monitoring.config`: a `MonitoringConfig` for `--monitoring_config_file`, Prometheus on at TF
  Serving's default path.

`merged_config(directory, name, base_path, batching)` then `write_files` (`powerbert export
--serving-config DIR`) put one model into the files already in `directory`: the other models keep
their entries (version policies and labels too), and the batching fields not given are kept.

`powerbert serve` reads the same three files with the same flags.
"""

import os

from serving.batching import BatchingParameters
from serving.config_protos import BATCHING_FIELDS, BatchingParametersProto, ConfigError, ModelServerConfig, \
    MonitoringConfig, read_batching_parameters, read_text_proto, to_text
from serving.model_config import PLATFORM, model_specs, read_model_config

MODELS_FILE = "models.config"
BATCHING_FILE = "batching_parameters.txt"
MONITORING_FILE = "monitoring.config"


def write_serving_config(directory, models, batching=None):
    """Writes the three flag files into `directory` (created if missing); returns {file name: path}.

    Args:
        models: {name: base path}, the base paths as the server will see them (inside the
            container, e.g. `/models/sst2`): absolute, as TF Serving requires.
        batching: `BatchingParameters` (default: TF Serving's defaults; `num_batch_threads`
            defaults to this machine's cores, so set it for the serving machine).

    Raises:
        ValueError: a name a REST URL cannot hold; `ConfigError` (a ValueError) for a file TF Serving
            would refuse, e.g. a relative base path, and nothing is then left in `directory` for it.
    """
    for name in models:
        _check_name(name)
    config = ModelServerConfig()
    for name, base_path in models.items():
        config.model_config_list.config.add(name=name, base_path=str(base_path), model_platform=PLATFORM)
    return write_files(directory, config, batching or BatchingParameters())


def merged_config(directory, name, base_path, batching=None):
    """The `ModelServerConfig` and `BatchingParameters` of the kit's files in `directory` with model
    `name` put in; nothing is written (check before long work, then `write_files`).

    An entry of the same name gets the new base path and keeps its version policy and labels;
    other entries are kept as they are. `batching` ({field: int}, fields of `BatchingParameters`)
    replaces those fields of the batching file already there (of TF Serving's defaults if there
    is none); the others are kept.

    Raises:
        ConfigError: the `models.config` or `batching_parameters.txt` already in `directory` is one
            TF Serving would refuse, or the new entry is (a relative `base_path`); ValueError: a
            name a REST URL cannot hold.
    """
    _check_name(name)
    models_path, batching_path = os.path.join(directory, MODELS_FILE), os.path.join(directory, BATCHING_FILE)
    config = ModelServerConfig()
    if os.path.exists(models_path):
        config = read_text_proto(models_path, ModelServerConfig)
        model_specs(config, models_path)  # before the merge: a custom config would be lost to it
    entries = config.model_config_list.config
    entry = next((model for model in entries if model.name == name), None) or entries.add(name=name)
    entry.base_path, entry.model_platform = str(base_path), PLATFORM
    model_specs(config, models_path)  # the new entry, by the server's own rules (an absolute base path)
    fields = read_batching_parameters(batching_path) if os.path.exists(batching_path) else {}
    return config, BatchingParameters(**{**fields, **(batching or {})})


def _check_name(name):
    if not name or "/" in name or ":" in name:
        raise ValueError(f"model name {name!r} cannot appear in a REST URL (/v1/models/NAME:predict)")


def write_files(directory, config, batching):
    """Writes `config` (a `ModelServerConfig`), `batching` (a `BatchingParameters`) and a monitoring
    config with Prometheus on into `directory`, each parsed back before it is kept; returns
    {file name: path}."""
    proto = BatchingParametersProto()
    for field in BATCHING_FIELDS:
        getattr(proto, field).value = getattr(batching, field)
    monitoring = MonitoringConfig()
    monitoring.prometheus_config.enable = True
    os.makedirs(directory, exist_ok=True)
    return {MODELS_FILE: _write_checked(directory, MODELS_FILE, to_text(config), read_model_config),
            BATCHING_FILE: _write_checked(directory, BATCHING_FILE, to_text(proto),
                                          lambda path: read_text_proto(path, BatchingParametersProto)),
            MONITORING_FILE: _write_checked(directory, MONITORING_FILE, to_text(monitoring),
                                            lambda path: read_text_proto(path, MonitoringConfig))}


def _write_checked(directory, name, text, check):
    """Writes `text` to a hidden file, `check`s it, then renames it to `name` (a polling server never
    reads half a file, and a refused file is not left behind)."""
    path, staging = os.path.join(directory, name), os.path.join(directory, f".{name}.tmp")
    with open(staging, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        check(staging)
    except ConfigError as e:
        os.remove(staging)
        raise ConfigError(str(e).replace(staging, path)) from None
    os.replace(staging, path)
    return path
