"""TLS settings and Envoy's TLS, admin and byte-cap configuration: what the renderer and the
router write, validated by Envoy itself (`envoy --mode validate` loads the certificates)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelhub.common.settings import TlsSettings
from modelhub.devstack import devcerts
from modelhub.inference.settings import InferenceSettings
from modelhub.router import envoy, xds
from modelhub.router.table import empty_table


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> devcerts.LocalCerts:
    return devcerts.ensure(tmp_path_factory.mktemp("tls"))


def _ingress(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener: dict[str, Any] = bootstrap["static_resources"]["listeners"][0]
    assert listener["name"] == "ingress"
    return listener


def _hcm(bootstrap: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = _ingress(bootstrap)["filter_chains"][0]["filters"][0]["typed_config"]
    return config


def test_tls_settings_are_all_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CA_FILE", "CERT_FILE", "KEY_FILE", "SERVER_NAME"):
        monkeypatch.delenv(f"MODELHUB_TLS_{name}", raising=False)
    assert not TlsSettings().enabled
    with pytest.raises(ValidationError, match="missing: key_file"):
        TlsSettings(ca_file="ca.crt", cert_file="a.crt")
    monkeypatch.setenv("MODELHUB_TLS_CA_FILE", "ca.crt")
    monkeypatch.setenv("MODELHUB_TLS_CERT_FILE", "a.crt")
    monkeypatch.setenv("MODELHUB_TLS_KEY_FILE", "a.key")
    assert TlsSettings().enabled
    assert not TlsSettings.off().enabled  # whatever the environment says


def test_local_certificates_are_made_once_and_chain_to_the_ca(
    certs: devcerts.LocalCerts,
) -> None:
    before = certs.service.cert.read_bytes()
    again = devcerts.ensure(certs.ca.parent)
    assert again.service.cert.read_bytes() == before
    assert certs.service.key.stat().st_mode & 0o077 == 0


def test_plaintext_by_default_and_tls_with_alpn_for_grpc_and_rest(
    certs: devcerts.LocalCerts,
) -> None:
    plain = _ingress(yaml.safe_load(envoy.render(envoy.LOCAL)))
    assert "transport_socket" not in plain["filter_chains"][0]
    params = replace(
        envoy.LOCAL, tls_cert_file=str(certs.server.cert), tls_key_file=str(certs.server.key)
    )
    chain = _ingress(yaml.safe_load(envoy.render(params)))["filter_chains"][0]
    context = chain["transport_socket"]["typed_config"]
    assert context["@type"].endswith("DownstreamTlsContext")
    assert context["common_tls_context"]["alpn_protocols"] == ["h2", "http/1.1"]
    assert "require_client_certificate" not in context
    mutual = replace(params, tls_client_ca_file=str(certs.ca))
    context = _ingress(yaml.safe_load(envoy.render(mutual)))["filter_chains"][0]
    context = context["transport_socket"]["typed_config"]
    assert context["require_client_certificate"] is True
    assert context["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": str(certs.ca)}
    }
    with pytest.raises(ValueError, match="certificate and a key"):
        envoy.render(replace(envoy.LOCAL, tls_cert_file=str(certs.server.cert)))


def test_upstream_tls_on_every_cluster_envoy_and_the_router_write(
    certs: devcerts.LocalCerts,
) -> None:
    tls = TlsSettings(
        ca_file=str(certs.ca),
        cert_file=str(certs.service.cert),
        key_file=str(certs.service.key),
        server_name="modelhub",
    )
    upstream = xds.UpstreamTls.from_settings(tls)
    assert upstream is not None
    assert xds.UpstreamTls.from_settings(TlsSettings.off()) is None
    for cluster in envoy.static_clusters(replace(envoy.LOCAL, upstream_tls=upstream)):
        context = cluster["transport_socket"]["typed_config"]
        assert context["sni"] == "modelhub"
        common = context["common_tls_context"]
        assert common["alpn_protocols"] == ["h2"]  # gRPC
        assert common["tls_certificates"] == [
            {
                "certificate_chain": {"filename": str(certs.service.cert)},
                "private_key": {"filename": str(certs.service.key)},
            }
        ]
        assert common["validation_context"]["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": "modelhub"}}
        ]
    cluster = xds.grpc_cluster("pool-x", ["10.0.0.1:50052"], tls=upstream)
    assert cluster["transport_socket"] == upstream.transport_socket()
    assert "transport_socket" not in xds.grpc_cluster("pool-x", ["10.0.0.1:50052"])


def test_envoy_validates_tls_both_ways_with_the_byte_cap(
    certs: devcerts.LocalCerts, tmp_path: Path
) -> None:
    upstream = xds.UpstreamTls(str(certs.ca), str(certs.service.cert), str(certs.service.key))
    params = replace(
        envoy.LOCAL,
        xds_dir=str(tmp_path / "xds"),
        tls_cert_file=str(certs.server.cert),
        tls_key_file=str(certs.server.key),
        tls_client_ca_file=str(certs.ca),
        upstream_tls=upstream,
        max_request_bytes=1 << 20,
    )
    envoy.seed(params)
    config = tmp_path / "envoy.yaml"
    config.write_text(envoy.render(params))
    result = envoy.validate(config)
    assert result.returncode == 0, result.stdout + result.stderr
    # A snapshot the router writes with upstream TLS validates too.
    options = xds.XdsOptions(default_pool=("127.0.0.1:50052",), upstream_tls=upstream)
    assert xds.snapshot(empty_table(), options).clusters == []
    cluster = xds.grpc_cluster("pool-x", ["127.0.0.1:50052"], tls=upstream)
    bootstrap = yaml.safe_load(config.read_text())
    bootstrap["static_resources"]["clusters"].append(cluster)
    config.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    result = envoy.validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_byte_cap_covers_what_inference_accepts_and_bounds_what_envoy_holds() -> None:
    accepted = InferenceSettings.model_construct().max_receive_bytes()  # the defaults
    assert accepted < envoy.MAX_REQUEST_BYTES <= accepted + (1 << 20)
    params = replace(envoy.LOCAL, max_request_bytes=12345678)
    bootstrap = yaml.safe_load(envoy.render(params))
    assert _ingress(bootstrap)["per_connection_buffer_limit_bytes"] == 12345678
    hcm = _hcm(bootstrap)
    assert hcm["http2_protocol_options"]["initial_stream_window_size"] == 12345678
    filters = {f["name"]: f for f in hcm["http_filters"]}
    order = list(filters)
    # The guard runs before anything that holds a body (the transcoder holds REST bodies);
    # the routing filter after the transcoder (REST arrives as the same messages). Both are
    # the routing module, with the same limit.
    guard = order.index("modelhub.size_guard")
    assert guard < order.index("envoy.filters.http.grpc_json_transcoder")
    assert order.index("envoy.filters.http.grpc_json_transcoder") < order.index("modelhub.route")
    for name, role in (("modelhub.size_guard", "size_guard"), ("modelhub.route", "route")):
        config = filters[name]["typed_config"]
        assert config["filter_name"] == role
        assert config["filter_config"]["value"] == "12345678"
        module = config["dynamic_module_config"]["module"]["local"]["filename"]
        assert module == str(envoy.ROUTE_MODULE)
    # Envoy's own 413 becomes RESOURCE_EXHAUSTED for gRPC and {"error"} for REST.
    grpc_mapper, rest_mapper = hcm["local_reply_config"]["mappers"]
    assert grpc_mapper["headers_to_add"][0]["header"] == {"key": "grpc-status", "value": "8"}
    assert "limit of 12345678 bytes" in grpc_mapper["body"]["inline_string"]
    assert rest_mapper["body_format_override"]["content_type"] == "application/json"
