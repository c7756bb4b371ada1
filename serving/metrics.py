"""Prometheus metrics in TF Serving's names, at TF Serving's `/monitoring/prometheus/metrics`.

On only with `--monitoring_config_file` (a `tensorflow.serving.MonitoringConfig` text proto with
`prometheus_config { enable: true path: "..." }`; an empty `path` means TF Serving's default).
Each server has its own `prometheus_client` registry, so servers in one process do not mix counts.

Names. TF Serving names a metric like a path (`/tensorflow/serving/request_count`) and its
exporter (`util/prometheus_exporter.cc`) turns every character outside `[a-zA-Z0-9_]` into `:`,
giving `:tensorflow:serving:request_count`. A leading `:` is legal in Prometheus metric names
(`[a-zA-Z_:][a-zA-Z0-9_:]*`, also `prometheus_client`'s rule), so the names are TF Serving's as
they are. TF Serving writes its counters without the `_total` suffix that `prometheus_client` adds
to every counter, so the request count is exposed as an untyped metric: the series name stays the
one TF Serving dashboards query (`rate()` works on it just the same).

| Metric | Type | Labels | TF Serving's |
| --- | --- | --- | --- |
| `:tensorflow:serving:request_count` | untyped (a count) | model_name, version, signature_name, API, status | model_name, status |
| `:tensorflow:serving:request_latency` | histogram, microseconds | model_name, version, signature_name, API, entrypoint | model_name, API, entrypoint |
| `:tensorflow:serving:batching_session:processed_batch_size` | histogram, rows | model_name, version, signature_name | none |
| `:powerbert:serving:batch_queue_depth` | gauge, requests waiting | model_name, version, signature_name | (not in TF Serving) |

`API` is `predict`, `status` or `metadata` over REST (`entrypoint` `REST`), and the RPC's name,
`Predict`, `GetModelMetadata` or `GetModelStatus`, over gRPC (`entrypoint` `GRPC`), as TF Serving
labels them (it counts only predictions over gRPC; we count every call). `status` is TF Serving's
error code name (`OK`, `INVALID_ARGUMENT`, `NOT_FOUND`, ...). As in TF Serving, latency is
recorded for successful requests only, in TF Serving's buckets (10 us x 1.8^i, 33 of them; batch
sizes 1, 2, 4, ... 8192).
Label values are only names the server knows: a request for a model, version or signature it does
not serve is counted with that label empty, so that random URLs cannot grow the metrics forever.
"""

import bisect
import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, UnknownMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from serving.config_protos import ConfigError, MonitoringConfig, read_text_proto

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
QUEUE_DEPTH = ":powerbert:serving:batch_queue_depth"
# TF Serving's monitoring::Buckets::Exponential(scale, growth, count) bounds.
LATENCY_BUCKETS_US = tuple(10 * 1.8 ** i for i in range(33))
BATCH_SIZE_BUCKETS = tuple(2.0 ** i for i in range(14))
_KEY_LABELS = ("model_name", "version", "signature_name")


def prometheus_path(monitoring_config_file):
    """The metrics path a `MonitoringConfig` text file asks for, or None if Prometheus is off.

    Raises:
        ConfigError: the file cannot be read or parsed, or its path does not start with '/'.
    """
    prometheus = read_text_proto(monitoring_config_file, MonitoringConfig).prometheus_config
    if not prometheus.enable:
        return None
    path = prometheus.path or DEFAULT_PATH
    if not path.startswith("/"):
        raise ConfigError(f"{monitoring_config_file}: prometheus_config path {path!r} does not start with '/'")
    return path


class RequestLabels:
    """What one request is about, as far as it got: the labels of its metrics (filled in by the
    REST and gRPC handlers as they resolve the model, version and signature)."""

    __slots__ = ("model", "version", "signature", "api")

    def __init__(self):
        self.model, self.version, self.signature, self.api = "", None, "", ""


class _Histogram:
    """Bucket counts and sum of one label set (the caller holds the lock)."""

    __slots__ = ("counts", "total")

    def __init__(self, bounds):
        self.counts, self.total = [0] * (len(bounds) + 1), 0.0

    def observe(self, bounds, value):
        self.counts[bisect.bisect_left(bounds, value)] += 1  # bucket i holds bounds[i-1] < v <= bounds[i]
        self.total += value

    def buckets(self, bounds):
        """[(le, cumulative count)] ending with +Inf, `le` written as TF Serving's exporter does (%g)."""
        out, running = [], 0
        for bound, count in zip(list(bounds) + [None], self.counts):
            running += count
            out.append(("+Inf" if bound is None else f"{bound:.6g}", running))
        return out


class ServingMetrics:
    """The server's metrics in a registry of its own; a `prometheus_client` collector.

    Args:
        queue_depths: () -> {(model, version, signature): requests waiting}, or None without batching.
    """

    def __init__(self, queue_depths=None):
        self._queue_depths = queue_depths
        self._lock = threading.Lock()
        self._counts = {}
        self._latency = {}
        self._batch_sizes = {}
        self._queue_keys = set()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def record_request(self, model, version, signature, api, status, seconds, entrypoint="REST"):
        """One answered request; `status` is a TF Serving error code name, `version` None if unknown,
        `entrypoint` `REST` or `GRPC`."""
        version = "" if version is None else str(version)
        with self._lock:
            key = (model, version, signature, api, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            if status == "OK":
                key = (model, version, signature, api, entrypoint)
                self._latency.setdefault(key, _Histogram(LATENCY_BUCKETS_US)).observe(
                    LATENCY_BUCKETS_US, seconds * 1e6)

    def record_batch(self, key, size):
        """One batch of `size` rows run for `key` = (model, version, signature)."""
        model, version, signature = key
        with self._lock:
            label_values = (model, str(version), signature)
            self._batch_sizes.setdefault(label_values, _Histogram(BATCH_SIZE_BUCKETS)).observe(
                BATCH_SIZE_BUCKETS, size)
            self._queue_keys.add(label_values)

    def exposition(self):
        """The metrics page (Prometheus text format 0.0.4), as bytes."""
        return generate_latest(self.registry)

    def collect(self):
        with self._lock:
            counts = dict(self._counts)
            latency = {k: h.buckets(LATENCY_BUCKETS_US) + [h.total] for k, h in self._latency.items()}
            sizes = {k: h.buckets(BATCH_SIZE_BUCKETS) + [h.total] for k, h in self._batch_sizes.items()}
            queue_keys = set(self._queue_keys)
        family = UnknownMetricFamily(REQUEST_COUNT, "The total number of requests.",
                                     labels=_KEY_LABELS + ("API", "status"))
        for labels, count in sorted(counts.items()):
            family.add_metric(labels, count)
        yield family
        family = HistogramMetricFamily(
            REQUEST_LATENCY, "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            labels=_KEY_LABELS + ("API", "entrypoint"))
        for labels, (*buckets, total) in sorted(latency.items()):
            family.add_metric(labels, buckets, total)
        yield family
        if self._queue_depths is None:
            return
        family = HistogramMetricFamily(BATCH_SIZE, "Tracks the batch size distribution on processing.",
                                       labels=_KEY_LABELS)
        for labels, (*buckets, total) in sorted(sizes.items()):
            family.add_metric(labels, buckets, total)
        yield family
        depths = {(m, str(v), s): n for (m, v, s), n in self._queue_depths().items()}
        family = GaugeMetricFamily(QUEUE_DEPTH, "Requests waiting in the batch queue (not yet running).",
                                   labels=_KEY_LABELS)
        for labels in sorted(queue_keys | set(depths)):
            family.add_metric(labels, depths.get(labels, 0))
        yield family
