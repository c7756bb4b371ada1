"""Prometheus metrics (--monitoring_config_file): TF Serving's names and path, parsed back with
`prometheus_client`'s own parser after known traffic (in-process servers, as in test_rest_server.py).
"""

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.batching import BatchingParameters
from serving.client import ErrorResponse
from serving.config_protos import ConfigError
from serving.metrics import BATCH_SIZE, DEFAULT_PATH, QUEUE_DEPTH, REQUEST_COUNT, REQUEST_LATENCY, prometheus_path
from tests.test_model_config import model, save_toy, served_at_zero, write_config
from tests.test_rest_server import ServerThread, ServingOptions, _concurrently, build_app, client_for


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("prometheus-models") / "toy"
    for version in (1, 2):
        save_toy(base, version)
    return base


def scrape(url, path=DEFAULT_PATH):
    """{metric family name: [(sample name, labels, value)]} of the server's metrics page."""
    with urllib.request.urlopen(url + path) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {family.name: [(s.name, s.labels, s.value) for s in family.samples]
            for family in text_string_to_metric_families(text)}


def counts(families):
    """{(model, version, signature, API, status): count} of the request counter."""
    return {(labels["model_name"], labels["version"], labels["signature_name"], labels["API"], labels["status"]): value
            for _, labels, value in families[REQUEST_COUNT]}


def histograms(samples):
    """{label values without le: (cumulative buckets [(le, count)], count, sum)}."""
    out = {}
    for name, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        buckets, count, total = out.get(key, ([], None, None))
        if name.endswith("_bucket"):
            buckets.append((float(labels["le"]), value))
        elif name.endswith("_count"):
            count = value
        else:
            total = value
        out[key] = (buckets, count, total)
    return out


def test_request_counts_and_latency_histograms(toy, tmp_path):
    config = write_config(tmp_path / "models.config", model("toy", toy, "model_version_policy { all {} }"))
    app = build_app(None, ServingOptions(poll_seconds=0, model_config_file=config, prometheus_path=DEFAULT_PATH))
    with ServerThread(app) as url:
        client = client_for(url, "toy")
        for _ in range(5):
            assert served_at_zero(client, "/v1/models/toy/versions/1:predict") == 1.0
        for _ in range(3):
            assert served_at_zero(client, "/v1/models/toy:predict") == 2.0
        for path, body in [("/v1/models/toy:predict", {"instances": ["not a number"]}),
                           ("/v1/models/toy:predict", {"instances": [1.0], "signature_name": "nope"}),
                           ("/v1/models/toy/versions/7:predict", {"instances": [1.0]}),
                           ("/v1/models/random-name:predict", {"instances": [1.0]})]:
            with pytest.raises(ErrorResponse):
                client.request("POST", path, body)
        client.status()
        families = scrape(url)

    assert counts(families) == {
        ("toy", "1", "serving_default", "predict", "OK"): 5,
        ("toy", "2", "serving_default", "predict", "OK"): 3,
        ("toy", "2", "serving_default", "predict", "INVALID_ARGUMENT"): 1,
        ("toy", "2", "", "predict", "INVALID_ARGUMENT"): 1,  # unknown signature: not a label value
        ("toy", "", "", "predict", "NOT_FOUND"): 1,
        ("", "", "", "predict", "NOT_FOUND"): 1,  # unknown model: not a label value
        ("toy", "", "", "status", "OK"): 1,
    }
    latency = histograms(families[REQUEST_LATENCY])
    by_version = {dict(key)["version"]: value for key, value in latency.items() if dict(key)["API"] == "predict"}
    assert sorted(by_version) == ["1", "2"]  # successful requests only, as TF Serving
    for version, requests in (("1", 5), ("2", 3)):
        buckets, count, total = by_version[version]
        assert count == requests and buckets[-1] == (float("inf"), requests)
        assert [c for _, c in buckets] == sorted(c for _, c in buckets) and total > 0
        assert [le for le, _ in buckets[:3]] == [10.0, 18.0, 32.4] and len(buckets) == 34  # TF Serving's
    assert BATCH_SIZE not in families and QUEUE_DEPTH not in families  # batching is off


def test_batch_size_histogram_and_servers_side_by_side(toy, tmp_path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/custom/metrics" }')
    params = BatchingParameters(max_batch_size=64, batch_timeout_micros=100000, max_enqueued_batches=100,
                                num_batch_threads=1)
    batching = build_app({"toy": str(toy)}, ServingOptions(poll_seconds=0, enable_batching=True, batching=params,
                                                           prometheus_path=prometheus_path(str(monitoring))))
    plain = build_app({"toy": str(toy)}, ServingOptions(poll_seconds=0, prometheus_path=DEFAULT_PATH))
    with ServerThread(batching) as url, ServerThread(plain) as plain_url:
        clients = [client_for(url, "toy") for _ in range(12)]
        results = _concurrently([lambda c=c: c.predict(instances=[0.0, 2.0]) for c in clients])
        assert all(r == {"predictions": [2.0, 3.0]} for r in results), results
        assert served_at_zero(client_for(plain_url, "toy"), "/v1/models/toy:predict") == 2.0
        families, plain_families = scrape(url, "/custom/metrics"), scrape(plain_url)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + DEFAULT_PATH)  # the config's path replaces the default
        assert e.value.code == 404
        scheduler = batching.state.server.scheduler.stats()

    assert counts(families) == {("toy", "2", "serving_default", "predict", "OK"): 12}
    assert counts(plain_families) == {("toy", "2", "serving_default", "predict", "OK"): 1}  # own registry
    (buckets, count, total), = histograms(families[BATCH_SIZE]).values()
    assert count == scheduler["batches"] < 12 and total == 24  # merged, and every row counted once
    assert buckets[0] == (1.0, 0) and buckets[-1] == (float("inf"), count)
    assert families[QUEUE_DEPTH] == [(QUEUE_DEPTH, {"model_name": "toy", "version": "2",
                                                    "signature_name": "serving_default"}, 0.0)]


def test_metrics_only_with_a_monitoring_config(toy, tmp_path):
    with ServerThread(build_app({"toy": str(toy)}, ServingOptions(poll_seconds=0))) as url:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + DEFAULT_PATH)
        assert e.value.code == 404
    config = tmp_path / "monitoring.config"
    for text, path in [("", None), ("prometheus_config { enable: false path: '/m' }", None),
                       ("prometheus_config { enable: true }", DEFAULT_PATH),
                       ("prometheus_config { enable: true path: '/m' }", "/m")]:
        config.write_text(text)
        assert prometheus_path(str(config)) == path
    for text, message in [("prometheus_config { enable: true path: 'm' }", "does not start with '/'"),
                          ("prometheus { enable: true }", 'has no field named "prometheus"')]:
        config.write_text(text)
        with pytest.raises(ConfigError, match=message):
            prometheus_path(str(config))
