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

`powerbert serve` reads the same three files with the same flags.
"""

import os

from serving.batching import BatchingParameters
from serving.config_protos import BatchingParametersProto, ConfigError, ModelServerConfig, MonitoringConfig, \
    read_text_proto, to_text
from serving.model_config import PLATFORM, read_model_config

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
    batching = batching or BatchingParameters()
    for name in models:
        if not name or "/" in name or ":" in name:
            raise ValueError(f"model name {name!r} cannot appear in a REST URL (/v1/models/NAME:predict)")
    config = ModelServerConfig()
    for name, base_path in models.items():
        config.model_config_list.config.add(name=name, base_path=str(base_path), model_platform=PLATFORM)
    proto = BatchingParametersProto()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
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
