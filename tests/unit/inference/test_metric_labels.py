"""The request histogram's `variant` label comes from a header anyone reaching the port
can set: it stays bounded however many distinct values arrive."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from modelhub.inference.metrics import OTHER_VARIANT, InferenceMetrics


def _series(registry: CollectorRegistry) -> set[tuple[tuple[str, str], ...]]:
    return {
        tuple(sorted(sample.labels.items()))
        for family in registry.collect()
        if family.name == "modelhub_inference_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    }


def test_twenty_thousand_variants_make_a_bounded_number_of_series() -> None:
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry, max_variant_labels=256)
    for i in range(20_000):
        metrics.observe_request("fraud", "1", f"v{i}", "OK", 0.001, "endpoints/shop")
    series = _series(registry)
    assert len(series) == 257  # the first 256 pairs, and `_other`
    assert len(metrics.variants) == 256
    assert metrics.request_duration.labels("fraud", "1", OTHER_VARIANT, "OK")._sum.get() > 0
    assert registry.get_sample_value(
        "modelhub_inference_label_overflow_total", {"label": "variant", "reason": "cap"}
    ) == float(20_000 - 256)
    # A pair already labelled keeps its label.
    metrics.observe_request("fraud", "1", "v7", "OK", 0.001, "endpoints/shop")
    assert (
        registry.get_sample_value(
            "modelhub_inference_request_duration_seconds_count",
            {"model": "fraud", "version": "1", "variant": "v7", "code": "OK"},
        )
        == 2.0
    )


def test_invalid_names_are_labelled_other_and_take_no_place() -> None:
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry, max_variant_labels=2)
    for value in ("Champion", "a b", "-x", "x" * 64, "_other", "名前", "x-"):
        metrics.observe_request("fraud", "1", value, "OK", 0.001, "endpoints/shop")
    assert len(metrics.variants) == 0
    assert {dict(s)["variant"] for s in _series(registry)} == {OTHER_VARIANT}
    assert (
        registry.get_sample_value(
            "modelhub_inference_label_overflow_total", {"label": "variant", "reason": "invalid"}
        )
        == 7.0
    )
    # Valid names, then the cap: the same variant on another endpoint is another pair.
    metrics.observe_request("fraud", "1", "champion", "OK", 0.001, "endpoints/shop")
    metrics.observe_request("fraud", "1", "champion", "OK", 0.001, "endpoints/web")
    metrics.observe_request("fraud", "1", "next", "OK", 0.001, "endpoints/shop")
    assert {dict(s)["variant"] for s in _series(registry)} == {OTHER_VARIANT, "champion"}


def test_direct_requests_are_not_labelled() -> None:
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry, max_variant_labels=0)
    metrics.observe_request("fraud", "1", "", "OK", 0.001)
    assert {dict(s)["variant"] for s in _series(registry)} == {""}
    assert (
        registry.get_sample_value(
            "modelhub_inference_label_overflow_total", {"label": "variant", "reason": "cap"}
        )
        == 0.0
    )


def test_with_the_registry_only_real_variants_label_a_series() -> None:
    """Following the registry's endpoints, 20,000 made-up values add no series at all: the
    metric's series are the same as before they arrived."""
    from modelhub.inference.endpoints import EndpointRoutes, RoutesTable

    routes = RoutesTable()
    routes.put("endpoints/shop", EndpointRoutes(frozenset({"champion", "challenger"})))
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry, max_variant_labels=256)
    metrics.variants.exists = routes.knows
    for variant in ("champion", "challenger", "champion"):
        metrics.observe_request("fraud", "1", variant, "OK", 0.001, "endpoints/shop")
    metrics.observe_request("fraud", "1", "made-up", "OK", 0.001, "endpoints/shop")
    before = _series(registry)
    assert {dict(s)["variant"] for s in before} == {"champion", "challenger", OTHER_VARIANT}
    for i in range(20_000):
        metrics.observe_request("fraud", "1", f"v{i}", "OK", 0.001, "endpoints/shop")
        # A real variant name sent with another endpoint's header is no real pair either.
        metrics.observe_request("fraud", "1", "champion", "OK", 0.001, f"endpoints/e{i % 50}")
    assert _series(registry) == before
    assert registry.get_sample_value(
        "modelhub_inference_label_overflow_total", {"label": "variant", "reason": "unknown"}
    ) == float(1 + 2 * 20_000)
