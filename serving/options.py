"""`ServingOptions`: the server's knobs, importable without TensorFlow or Starlette (CLI parsing)."""

import os
from dataclasses import dataclass, field

from serving.batching import BatchingParameters


@dataclass
class ServingOptions:
    """Server knobs; TF Serving's flag names where it has one."""

    poll_seconds: float = 1.0  # --file_system_poll_wait_seconds
    enable_batching: bool = False
    batching: BatchingParameters = field(default_factory=BatchingParameters)
    timeout_ms: int = 30000  # --rest_api_timeout_in_ms
    num_request_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_body_bytes: int = 10 * 1024 * 1024
    inline_parse_bytes: int = 64 * 1024  # bodies above this are parsed on a worker thread
    prefer_tflite_model: bool = False  # --prefer_tflite_model: serve <version>/model.tflite if present
    model_config_file: str = None  # --model_config_file: serve its models instead of build_app's
    model_config_poll_seconds: float = 0  # --model_config_file_poll_wait_seconds; 0 reads it once
    allow_unavailable_labels: bool = False  # --allow_version_labels_for_unavailable_models
    prometheus_path: str = None  # from --monitoring_config_file; None: no Prometheus endpoint
    # gRPC (serving.grpc_server). The port is TF Serving's --port; None: no gRPC, 0: a free port.
    grpc_port: int = None
    grpc_host: str = "127.0.0.1"  # --host
    grpc_max_threads: int = field(default_factory=lambda: 4 * (os.cpu_count() or 1))  # TF Serving's default
    grpc_max_message_size: int = 10 * 1024 * 1024  # larger requests (or answers) get RESOURCE_EXHAUSTED
    grpc_channel_arguments: str = ""  # TF Serving's --grpc_channel_arguments: "key=value,key=value"
