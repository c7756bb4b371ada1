"""The models to serve: TF Serving's `--model_config_file` or name=base path pairs, checked as TF
Serving checks them.

The file is a `tensorflow.serving.ModelServerConfig` in protobuf text format, parsed with TF
Serving's own proto (`tensorflow-serving-api`):

    model_config_list {
      config { name: "sst2" base_path: "/models/sst2" model_platform: "tensorflow"
               model_version_policy { specific { versions: 1 versions: 2 } }
               version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
    }

Refused with TF Serving's message where it has one (`model_servers/server_core.cc`): an unknown
field or bad syntax, a model listed twice, a relative base path, no platform, a platform other
than `tensorflow`, `custom_model_config`. Refused here only: a model without a name or base path
(TF Serving would fail later, on the path) and a base path that is a URI (only local directories
are served). Version labels are checked against the versions available when the config is
applied (`check_labels`). Light to import (no TensorFlow): the deployment kit uses it.
"""

import logging
import posixpath
from dataclasses import dataclass

from serving.config_protos import ConfigError, ModelServerConfig, read_text_proto

log = logging.getLogger("serving")
PLATFORM = "tensorflow"  # TF Serving's kTensorFlowModelPlatform, the only platform served here


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's `ServableVersionPolicy`: `latest` (the `num_versions` highest), `all`, or the
    `specific` `versions`."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple = ()

    def __post_init__(self):
        if self.kind not in ("latest", "all", "specific"):
            raise ValueError(f"unknown version policy {self.kind!r}")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the config: equal specs mean nothing to reload."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: tuple = ()  # sorted (label, version) pairs


def specs_from_paths(models):
    """`ModelSpec`s of {name: base path} (`--model_name`/`--model_base_path`): latest version, no labels."""
    return [ModelSpec(name, path) for name, path in models.items()]


def read_model_config(path):
    """The `ModelSpec`s of a `ModelServerConfig` text file, or None for an empty file (TF Serving
    then takes no action: the models being served stay).

    Raises:
        ConfigError: "<path>: <problem>" for a file TF Serving would refuse (see the module doc).
    """
    return model_specs(read_text_proto(path, ModelServerConfig), path)


def model_specs(config, path):
    """The `ModelSpec`s of a `ModelServerConfig` message, or None for an empty one.

    Raises:
        ConfigError: "<path>: <problem>" for a config TF Serving would refuse (`path`: the file the
            config is from or is for).
    """
    which = config.WhichOneof("config")
    if which is None:
        return None
    if which != "model_config_list":
        raise ConfigError(f"{path}: ModelServer does not yet support custom model config "
                          "(only model_config_list)")
    specs, names = [], set()
    for model in config.model_config_list.config:
        problem = _problem(model, names)
        if problem:
            raise ConfigError(f"{path}: {problem}")
        names.add(model.name)
        if model.HasField("logging_config"):
            log.warning("%s: model %s: logging_config (request logging) is not supported; ignored",
                        path, model.name)
        specs.append(ModelSpec(model.name, model.base_path, _policy(model, path),
                               tuple(sorted(model.version_labels.items()))))
    return specs


def check_labels(specs, available, current, allow_unavailable=False):
    """{model: {label: version}} of `specs`, each label on a version `available(model)` holds.

    TF Serving's rule (`ServerCore::UpdateModelVersionLabelMap`): a label may point only at an
    available version; with `allow_unavailable` (its `--allow_version_labels_for_unavailable_models`)
    a new label, or one kept on its version, may point at any version, but moving a label in
    `current` still needs the new version available, so that its requests never fail mid-swap.

    Raises:
        ConfigError: TF Serving's "Request to assign label to version ..." message.
    """
    labels = {}
    for spec in specs:
        for label, version in spec.labels:
            existing = current.get(spec.name, {}).get(label)
            if not (allow_unavailable and existing in (None, version)) and version not in available(spec.name):
                raise ConfigError(f"Request to assign label to version {version} of model {spec.name}, "
                                  "which is not currently available for inference")
            labels.setdefault(spec.name, {})[label] = version
    return labels


# === Helpers ===

def _problem(model, names):
    name = model.name
    if not name:
        return "a model_config_list entry has no name"
    if name in names:
        return f"Illegal to list model {name} multiple times in config list"
    if not model.base_path:
        return f"model {name} has no base_path"
    if "://" in model.base_path:
        return f"model {name}: base_path {model.base_path} is a URI; only local directories are served"
    if not posixpath.isabs(model.base_path):
        return f"Expected model {name} to have an absolute path or URI; got base_path()={model.base_path}"
    if model.model_type:  # the deprecated enum: TENSORFLOW = 1
        if model.model_platform:
            return ("Illegal setting both ModelServerConfig::model_type (deprecated) and "
                    f"ModelServerConfig::model_platform, model name is {name}")
        if model.model_type != 1:
            return f"ModelServerConfig::model_type choice {model.model_type} not supported."
    elif not model.model_platform:
        return ("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {name}")
    elif model.model_platform != PLATFORM:
        return f"Model {name} requests unsupported platform {model.model_platform}"
    return None


def _policy(model, path):
    policy = model.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        if not policy.specific.versions:
            log.warning("%s: No specific versions requested for servable %s.", path, model.name)
        return VersionPolicy("specific", versions=tuple(sorted(set(policy.specific.versions))))
    # TF Serving serves at least one: num_versions 0 (unset) means 1.
    return VersionPolicy("latest", num_versions=max(policy.latest.num_versions, 1) if which else 1)
