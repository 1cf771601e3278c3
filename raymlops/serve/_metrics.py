"""raymlops' Prometheus metrics of a serving replica, exported beside Ray Serve's own."""

from typing import TYPE_CHECKING, Any

from ray.serve import metrics

if TYPE_CHECKING:
    from raymlops.serve._app import Answer

_LATENCY_BOUNDARIES_MS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
_BATCH_BOUNDARIES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]


def _tags(*keys: str) -> Any:
    return keys  # Ray's stubs say tuple[str]; any tuple of names works


class ServeMetrics:
    """raymlops' Prometheus metrics, exported beside Ray Serve's own."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.predictions = metrics.Counter(
            "raymlops_predictions",
            description="Rows predicted, by model version and route (champion or canary).",
            tag_keys=_tags("model", "model_version", "route"),
        )
        self.requests = metrics.Counter(
            "raymlops_requests",
            description="Prediction requests answered, by model version and outcome.",
            tag_keys=_tags("model", "model_version", "outcome"),
        )
        self.rejected = metrics.Counter(
            "raymlops_rejected_requests",
            description="Requests refused, by reason (invalid, too_large, unauthorized, no_model).",
            tag_keys=_tags("model", "reason"),
        )
        self.latency_ms = metrics.Histogram(
            "raymlops_request_latency_ms",
            description="Time inside the replica from request to response, milliseconds.",
            boundaries=_LATENCY_BOUNDARIES_MS,
            tag_keys=_tags(
                "model",
            ),
        )
        self.batch_size = metrics.Histogram(
            "raymlops_batch_size",
            description="Requests per model call (dynamic batching).",
            boundaries=_BATCH_BOUNDARIES,
            tag_keys=_tags(
                "model",
            ),
        )
        self.shadow_compared = metrics.Counter(
            "raymlops_shadow_comparisons",
            description="Rows predicted by both champion and shadow challenger.",
            tag_keys=_tags("model", "model_version", "shadow_version"),
        )
        self.registry_errors = metrics.Counter(
            "raymlops_registry_errors",
            description="Refreshes of the served models that failed because the registry did not answer.",
            tag_keys=_tags("model", "error"),
        )
        self.shadow_disagreed = metrics.Counter(
            "raymlops_shadow_disagreements",
            description="Rows where the shadow challenger's prediction differs from the champion's.",
            tag_keys=_tags("model", "model_version", "shadow_version"),
        )
        for metric in (
            self.predictions,
            self.requests,
            self.rejected,
            self.latency_ms,
            self.batch_size,
            self.shadow_compared,
            self.shadow_disagreed,
            self.registry_errors,
        ):
            metric.set_default_tags({"model": model})

    def observe(self, answer: "Answer", num_rows: int, latency_ms: float) -> None:
        version = str(answer.version)
        self.predictions.inc(num_rows, tags={"model_version": version, "route": answer.route})
        self.requests.inc(tags={"model_version": version, "outcome": "ok"})
        self.latency_ms.observe(latency_ms)
        if answer.shadow_predictions is not None:
            tags = {"model_version": version, "shadow_version": str(answer.shadow_version)}
            differ = sum(a != b for a, b in zip(answer.predictions, answer.shadow_predictions, strict=True))
            self.shadow_compared.inc(num_rows, tags=tags)
            if differ:
                self.shadow_disagreed.inc(differ, tags=tags)
