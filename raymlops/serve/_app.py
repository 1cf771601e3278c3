"""The Ray Serve deployment: a FastAPI ingress over the registry's champion and challenger.

Each replica holds the champion's ``Predictor`` (and the challenger's during a
canary or shadow rollout) in a ``ServedModels`` that follows the registry
(``_models.py``). ``reconfigure`` (Serve's ``user_config``) can pin versions and
weights instead, for config-file deployments such as KubeRay's RayService.

Concurrent requests are batched (``@serve.batch``) into one preprocessor and
model call. Every prediction goes to the inference log through a buffer that a
background thread flushes to Delta, off the request path.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime
# (a string annotation "Request" inside the Serve ingress class is taken for a query parameter).

import json
import logging
import os
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from ray import serve

from raymlops._internal.delta import delta_sink
from raymlops.config import ProjectConfig
from raymlops.contracts.logs import (
    FEEDBACK_TABLE_PROPERTIES,
    LOG_TABLE_PROPERTIES,
    feedback_schema,
    inference_log_schema,
)
from raymlops.serve._auth import bearer_matches, token_digest, token_sha256
from raymlops.serve._ids import RequestIds
from raymlops.serve._journal import Journal
from raymlops.serve._log import (
    BufferedLog,
    Feedback,
    LoggedBatch,
    Prediction,
    feedback_table,
    journal_form,
    monitor_sink,
    now_us,
    prediction_table,
)
from raymlops.serve._metrics import ServeMetrics
from raymlops.serve._models import Loaded, ServedModels, ServedState
from raymlops.serve._options import deployment_options
from raymlops.serve._predict import Answer, BatchPredictor, Item, canary_bucket
from raymlops.serve._requests import feedback_model, problems, request_model

_LOG = logging.getLogger("raymlops.serve")
REQUEST_ID_HEADER = "x-request-id"
# a replica asks the registry every serving.watch_interval_s: MLflow's default (7 retries with a
# doubling backoff) would hide an outage for minutes; the watcher retries by itself
_MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class Server:
    """The replica's logic; the Serve deployment class below only routes HTTP to it."""

    def __init__(self, config: ProjectConfig, token_sha256: str | None = None) -> None:
        import torch

        # Replicas hold a fraction of a CPU and requests arrive batched: torch's own thread
        # pool would only contend with the other replicas and the proxy for the same cores.
        torch.set_num_threads(1)
        self.config = config
        self.serving = config.serving
        self.task = config.model.task
        schema = config.data.schema
        self.columns = list(schema.feature_names) + [c.name for c in schema.metadata_columns]
        if schema.id_column:
            self.columns.append(schema.id_column)
        if schema.time_column:  # logged beside the prediction; the predictor reads only the features
            self.columns.append(schema.time_column)
        self.request_model = request_model(schema, unknown_category=self.serving.unknown_category)
        self.feedback_model = feedback_model(schema)
        self.token_digest = token_digest(config, token_sha256)
        for key, value in _MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.ids = RequestIds(config)
        self.predictor = BatchPredictor(self.columns, self.task)
        self.num_batches = 0
        self.num_batched_requests = 0
        self.max_batch_size_seen = 0
        self._metrics = ServeMetrics(config.name)
        log_schema = inference_log_schema(config)
        self.log: BufferedLog[LoggedBatch | Prediction] | None = (
            BufferedLog(
                monitor_sink(
                    config.monitor_actor_name,
                    config.runtime.namespace,
                    config.inference_log_uri,
                    timeout_s=config.monitoring.ack_timeout_s,
                )
                if config.monitoring.enabled
                else delta_sink(config.inference_log_uri, LOG_TABLE_PROPERTIES),
                lambda entries: prediction_table(entries, log_schema),
                lambda entry: entry.num_rows,
                flush_interval_s=self.serving.log_flush_interval_s,
                max_buffer_rows=self.serving.log_max_buffer_rows,
                journal=self._journal(config, "predictions"),
                journal_form=journal_form,
            )
            if self.serving.inference_log
            else None
        )
        labels_schema = feedback_schema(config)
        self.feedback: BufferedLog[Feedback] = BufferedLog(
            delta_sink(config.feedback_uri, FEEDBACK_TABLE_PROPERTIES),
            lambda entries: feedback_table(entries, labels_schema),
            lambda entry: len(entry.labels),
            flush_interval_s=self.serving.log_flush_interval_s,
            max_buffer_rows=self.serving.log_max_buffer_rows,
            name="feedback-log",
            journal=self._journal(config, "feedback"),
        )
        self.models = ServedModels(config, self._registry_error)

    # ------------------------------------------------------------------ model state

    def _journal(self, config: ProjectConfig, log: str) -> Journal | None:
        """This replica's write-ahead journal for one log, or None (off, or the home is unwritable)."""
        if not self.serving.log_journal:
            return None
        try:
            return Journal(config.journal_dir / log)
        except OSError as e:  # an unwritable home: serve on, the log's own writes will report it
            _LOG.warning(
                "no write-ahead journal for the %s log (%s): a killed replica may lose "
                "up to serving.log_flush_interval_s of it",
                log,
                e,
            )
            return None

    @property
    def state(self) -> ServedState:
        return self.models.state

    def refresh(self) -> bool:
        """Re-read the rollout from the registry and swap models if it moved; True when it did."""
        return self.models.refresh()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Pin versions and weights (see ``ServedModels.reconfigure``)."""
        self.models.reconfigure(user_config)

    def _registry_error(self, error: Exception) -> None:
        self._metrics.registry_errors.inc(tags={"error": type(error).__name__})

    def close(self) -> None:
        self.models.close()
        if self.log:
            self.log.close()
        self.feedback.close()

    # ------------------------------------------------------------------ HTTP

    def authorize(self, request: Request) -> Response | None:
        if self.token_digest is None:
            return None
        if bearer_matches(request.headers.get("authorization", ""), self.token_digest):
            return None
        self._metrics.rejected.inc(tags={"reason": "unauthorized"})
        return _json(
            401,
            {"error": "unauthorized", "detail": "send 'Authorization: Bearer <token>'"},
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def predict(self, request: Request) -> Response:
        start = time.perf_counter()
        denied = self.authorize(request)
        if denied is not None:
            return denied
        raw, rejected = await self._parse(request)
        if rejected is not None:
            return rejected
        records = raw.get("records")
        if isinstance(records, list) and len(records) > self.serving.max_rows_per_request:
            return self._reject(
                413,
                "too_large",
                "records",
                f"{len(records)} records; at most {self.serving.max_rows_per_request} per request "
                "(serving.max_rows_per_request)",
            )
        try:
            self.request_model.model_validate(raw)
        except ValidationError as e:
            return self._reject(422, "invalid", problems=problems(e))
        state = self.state
        if state.champion is None:
            self._metrics.rejected.inc(tags={"reason": "no_model"})
            return _json(
                503,
                {
                    "error": "no model loaded",
                    "detail": f"{self.config.name} has no champion yet; promote one with `raymlops promote`",
                },
                headers={"Retry-After": str(int(self.serving.watch_interval_s) + 1)},
            )
        # the body's id first: Ray Serve's proxy puts its own x-request-id on every request
        request_id = raw.get("request_id") or self.ids.issue(
            request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        )
        canary = (
            state.challenger is not None
            and not state.rollout.shadow
            and canary_bucket(request_id) < state.rollout.canary_weight
        )
        # the batch journals and buffers this request's log entry before any answer goes out
        received = await request.body()  # read by _parse already: Starlette's cached bytes
        answer: Answer = await self.batched(Item(canary, request_id, raw["records"], received))
        if answer.error is not None:
            return self._reject(422, "invalid", "records", answer.error)
        if not answer.route:  # the champion went away while the request waited for its batch
            return _json(503, {"error": "no model loaded", "detail": "the model changed; retry"})
        body = self.predictor.body(request_id, answer)
        self.ids.answered(request_id)
        self._metrics.observe(answer, len(raw["records"]), (time.perf_counter() - start) * 1000)
        return _json(200, body, headers={"x-request-id": request_id})

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def batched(self, items: list[Item]) -> list[Answer]:
        """One model call for every request that arrived together (per route)."""
        state = self.state
        self.num_batches += 1
        self.num_batched_requests += len(items)
        self.max_batch_size_seen = max(self.max_batch_size_seen, len(items))
        self._metrics.batch_size.observe(len(items))
        answers: list[Answer] = [Answer() for _ in items]
        logged: list[LoggedBatch] | None = [] if self.log is not None else None
        routes = (("champion", state.champion, False), ("canary", state.challenger, True))
        # a challenger gone since the request picked its route: the champion answers it
        to_canary = [item.canary and state.challenger is not None for item in items]
        for route, loaded, canary in routes:
            index = [i for i, goes in enumerate(to_canary) if goes == canary]
            if not index or loaded is None:
                continue
            # shadow mode: the challenger also predicts the champion's rows; on a canary, the champion
            # also predicts the challenger's (logged beside them, for the canary's judge, and its fallback)
            shadow = (
                state.challenger
                if route == "champion" and state.rollout.shadow
                else state.champion
                if route == "canary"
                else None
            )
            group = [items[i] for i in index]
            for i, answer in zip(
                index, self.predictor.predict_group(loaded, route, shadow, group, logged), strict=True
            ):
                answers[i] = answer
        if self.log is not None and logged:
            self.log.append_many(logged)  # one journal record for the whole batch
        return answers

    async def feedback_endpoint(self, request: Request) -> Response:
        denied = self.authorize(request)
        if denied is not None:
            return denied
        raw, rejected = await self._parse(request)
        if rejected is not None:
            return rejected
        try:
            parsed = self.feedback_model.model_validate(raw)
        except ValidationError as e:
            return self._reject(422, "invalid", problems=problems(e))
        labels = list(parsed.labels)  # type: ignore[attr-defined]
        if len(labels) > self.serving.max_rows_per_request:
            return self._reject(
                413, "too_large", "labels", f"at most {self.serving.max_rows_per_request} labels"
            )
        request_id: str = parsed.request_id  # type: ignore[attr-defined]
        status = await self.ids.status(request_id)
        if status == "unknown":
            self._metrics.rejected.inc(tags={"reason": "unknown_request_id"})
            horizon_s = self.config.monitoring.dedup_horizon_s
            return _json(
                404,
                {
                    "request_id": request_id,
                    "status": "unknown",
                    "num_labels": 0,
                    "error": f"request_id: this endpoint made no prediction with this id in the last "
                    f"{horizon_s:g} s (monitoring.dedup_horizon_s); the labels were not stored. Send the "
                    "request_id a /predict answer returned.",
                },
            )
        self.feedback.append(Feedback(request_id, now_us(), labels))
        return _json(200, {"request_id": request_id, "status": status, "num_labels": len(labels)})

    def model_info(self) -> dict[str, Any]:
        state = self.state

        def describe(loaded: Loaded | None) -> dict[str, Any] | None:
            if loaded is None:
                return None
            return {"version": loaded.version, "run_id": loaded.run_id, "data_version": loaded.data_version}

        return {
            "name": self.config.name,
            "champion": describe(state.champion),
            "challenger": describe(state.challenger),
            "canary_weight": state.rollout.canary_weight,
            "shadow": state.rollout.shadow,
            "pinned": state.pinned,
            "task": self.task,
            "features": list(self.config.data.schema.feature_names),
        }

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model_loaded": self.state.champion is not None,
            "replica": {
                "num_batches": self.num_batches,
                "num_batched_requests": self.num_batched_requests,
                "max_batch_size_seen": self.max_batch_size_seen,
                "inference_log": {
                    "written": self.log.num_written,
                    "buffered": self.log.num_buffered,
                    "dropped": self.log.num_dropped,
                    "failed_flushes": self.log.num_failed_flushes,
                }
                if self.log
                else None,
            },
        }

    async def _parse(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            return {}, self._reject(
                415,
                "unsupported_media_type",
                "content-type",
                f"{media_type!r} is not JSON; send the body as application/json",
            )
        body = await request.body()
        if len(body) > self.serving.max_request_bytes:
            return {}, self._reject(
                413,
                "too_large",
                "body",
                f"{len(body)} bytes; at most {self.serving.max_request_bytes} (serving.max_request_bytes)",
            )
        try:
            raw = json.loads(body)
        except ValueError as e:
            return {}, self._reject(422, "invalid", "body", f"not valid JSON: {e}")
        if not isinstance(raw, dict):
            return {}, self._reject(422, "invalid", "body", "must be a JSON object")
        if "records" in raw and not isinstance(raw["records"], list):
            return {}, self._reject(422, "invalid", "records", "must be a list of records")
        return raw, None

    def _reject(
        self,
        status: int,
        reason: str,
        field: str | None = None,
        detail: str | None = None,
        *,
        problems: list[dict[str, str]] | None = None,
    ) -> Response:
        self._metrics.rejected.inc(tags={"reason": reason})
        found = problems or [{"field": field or "body", "reason": detail or ""}]
        summary = "; ".join(f"{p['field']}: {p['reason']}" for p in found[:5])
        return _json(status, {"error": summary, "problems": found})


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def build(config: ProjectConfig, *, user_config: dict[str, Any] | None = None) -> Any:
    """The Serve application (``serve.run`` target) for a project config.

    ``user_config`` pins the served versions and weights (see ``Server.reconfigure``);
    by default the replicas follow the registry.
    """
    api = FastAPI(
        title=f"raymlops: {config.name}",
        description="Predictions from the registry's champion; see the raymlops README for the API.",
        docs_url="/docs",
        redoc_url=None,
    )

    options = deployment_options(config)
    if user_config is not None:
        options["user_config"] = user_config

    @serve.deployment(**options)
    @serve.ingress(api)
    class ModelServer:
        def __init__(self, config_json: str, token_sha256: str | None) -> None:
            self.server = Server(ProjectConfig.model_validate_json(config_json), token_sha256)
            serving = self.server.serving
            self.server.batched.set_max_batch_size(serving.max_batch_size)  # type: ignore[attr-defined]
            self.server.batched.set_batch_wait_timeout_s(serving.batch_wait_timeout_s)  # type: ignore[attr-defined]

        def reconfigure(self, user_config: dict[str, Any]) -> None:
            self.server.reconfigure(user_config)

        def check_health(self) -> None:
            if not self.server.models.watching:
                raise RuntimeError("the model watcher thread died")

        def __del__(self) -> None:
            server = getattr(self, "server", None)
            if server is not None:
                server.close()

        @api.post("/predict")
        async def predict(self, request: Request) -> Response:
            return await self.server.predict(request)

        @api.post("/feedback")
        async def feedback(self, request: Request) -> Response:
            return await self.server.feedback_endpoint(request)

        @api.get("/healthz")
        async def healthz(self) -> dict[str, Any]:
            return self.server.health()

        @api.get("/model")
        async def model(self) -> dict[str, Any]:
            return self.server.model_info()

    return ModelServer.bind(  # type: ignore[attr-defined]
        portable_config(config).model_dump_json(by_alias=True), token_sha256(config)
    )


def portable_config(config: ProjectConfig) -> ProjectConfig:
    """The config with its storage locations resolved, so a replica anywhere finds the same stores."""
    storage = config.storage.model_copy(
        update={"home": config.home_uri, "mlflow_tracking_uri": config.mlflow_tracking_uri}
    )
    return config.model_copy(update={"storage": storage})
