"""TF Serving's configuration protos, read from their text format with errors that name the file.

`ModelServerConfig` (`--model_config_file`) is the class of the `tensorflow-serving-api` package.
That package ships neither `MonitoringConfig` (`--monitoring_config_file`,
`tensorflow_serving/config/monitoring_config.proto`) nor `BatchingParameters`
(`--batching_parameters_file`, `tensorflow_serving/servables/tensorflow/session_bundle_config.proto`),
so those two messages are built here from descriptors copied field for field (names, numbers,
types) from TF Serving's .proto files at tensorflow/serving commit 88ff3dd. A file TF Serving
parses, parses here; one it rejects (an unknown field, a wrong type) is rejected here too. They
live in a private descriptor pool, so they cannot clash with a later package that has them.
"""

import logging

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig  # noqa: F401 (re-exported)

log = logging.getLogger("serving")

# The `BatchingParameters` fields our batch scheduler has (`serving.batching.BatchingParameters`).
BATCHING_FIELDS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")

_MONITORING_CONFIG_PROTO = """
name: "tensorflow_serving/config/monitoring_config.proto"
package: "tensorflow.serving"
syntax: "proto3"
message_type {
  name: "PrometheusConfig"
  field { name: "enable" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL json_name: "enable" }
  field { name: "path" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "path" }
}
message_type {
  name: "MonitoringConfig"
  field { name: "prometheus_config" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".tensorflow.serving.PrometheusConfig" json_name: "prometheusConfig" }
}
"""

# Only BatchingParameters of that file: its other messages need TensorFlow's own config protos.
_BATCHING_PARAMETERS_PROTO = """
name: "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"
package: "tensorflow.serving"
syntax: "proto3"
dependency: "google/protobuf/wrappers.proto"
message_type {
  name: "BatchingParameters"
  field { name: "max_batch_size" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" json_name: "maxBatchSize" }
  field { name: "batch_timeout_micros" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" json_name: "batchTimeoutMicros" }
  field { name: "max_enqueued_batches" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" json_name: "maxEnqueuedBatches" }
  field { name: "num_batch_threads" number: 4 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" json_name: "numBatchThreads" }
  field { name: "thread_pool_name" number: 5 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.StringValue" json_name: "threadPoolName" }
  field { name: "allowed_batch_sizes" number: 6 label: LABEL_REPEATED type: TYPE_INT64
          json_name: "allowedBatchSizes" }
  field { name: "pad_variable_length_inputs" number: 7 label: LABEL_OPTIONAL type: TYPE_BOOL
          json_name: "padVariableLengthInputs" }
  field { name: "enable_large_batch_splitting" number: 8 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.BoolValue" json_name: "enableLargeBatchSplitting" }
  field { name: "max_execution_batch_size" number: 9 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".google.protobuf.Int64Value" json_name: "maxExecutionBatchSize" }
}
"""


def _build(pool, text):
    pool.Add(text_format.Parse(text, descriptor_pb2.FileDescriptorProto()))


def _message_classes():
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    _build(pool, _MONITORING_CONFIG_PROTO)
    _build(pool, _BATCHING_PARAMETERS_PROTO)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
                 for name in ("MonitoringConfig", "BatchingParameters"))


MonitoringConfig, BatchingParametersProto = _message_classes()


class ConfigError(ValueError):
    """A configuration file TF Serving would refuse; the message starts with the file's path."""


def read_text_proto(path, message_class):
    """The `message_class` message in text format in `path`.

    Raises:
        ConfigError: the file cannot be read, or does not parse (unknown field, wrong type, syntax),
            with the path and protobuf's line:column message.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: not a valid {message_class.DESCRIPTOR.full_name} text proto: {e}") from None


def to_text(message):
    """The text format of `message`, as TF Serving's flag files hold it."""
    return text_format.MessageToString(message)


def read_batching_parameters(path):
    """{field: int} of the `BATCHING_FIELDS` set in a `BatchingParameters` text proto file; the
    other fields TF Serving has are logged as ignored.

    Raises:
        ConfigError: the file cannot be read or is not a `BatchingParameters` text proto.
    """
    proto = read_text_proto(path, BatchingParametersProto)
    for field, _ in proto.ListFields():
        if field.name not in BATCHING_FIELDS:
            log.warning("batching parameter %s is not supported; ignored", field.name)
    return {name: getattr(proto, name).value for name in BATCHING_FIELDS if proto.HasField(name)}
