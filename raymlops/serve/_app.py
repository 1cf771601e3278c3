"""The Ray Serve deployment: a FastAPI ingress over the registry's champion and challenger.

Each replica holds the champion's ``Predictor`` (and the challenger's during a
canary or shadow rollout) and follows the registry: a watcher thread re-reads
the rollout every ``serving.watch_interval_s`` and, when an alias or weight
moved, loads the new bundle beside the old one and swaps a single reference.
Requests in flight finish on the state they started with, so promotion,
rollback and weight changes never fail a request. ``reconfigure`` (Serve's
``user_config``) can pin versions and weights instead, for config-file
deployments such as KubeRay's RayService.

Concurrent requests are batched (``@serve.batch``) into one preprocessor and
model call. Every prediction goes to the inference log through a buffer that a
background thread flushes to Delta, off the request path.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime
# (a string annotation "Request" inside the Serve ingress class is taken for a query parameter).

import asyncio
import collections
import dataclasses
import gc
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from ray import serve
from ray.serve import metrics

from raymlops import registry
from raymlops._internal.delta import delta_sink
from raymlops.config import ProjectConfig
from raymlops.contracts.logs import (
    FEEDBACK_TABLE_PROPERTIES,
    LOG_TABLE_PROPERTIES,
    feedback_schema,
    inference_log_schema,
)
from raymlops.serve._journal import Journal
from raymlops.serve._log import (
    BufferedLog,
    Feedback,
    LoggedBatch,
    Prediction,
    feedback_table,
    journal_form,
    logged_recently,
    monitor_sink,
    now_us,
    prediction_table,
)
from raymlops.serve._options import deployment_options
from raymlops.serve._requests import feedback_model, problems, request_model

if TYPE_CHECKING:
    from raymlops.bundle import Predictor

_LOG = logging.getLogger("raymlops.serve")
REQUEST_ID_HEADER = "x-request-id"
_LATENCY_BOUNDARIES_MS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
_BATCH_BOUNDARIES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
REGISTRY_ERROR_LOG_INTERVAL_S = 60.0
# a replica asks the registry every serving.watch_interval_s: MLflow's default (7 retries with a
# doubling backoff) would hide an outage for minutes; the watcher retries by itself
_MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@dataclasses.dataclass(frozen=True)
class _Loaded:
    version: int
    predictor: "Predictor"
    run_id: str
    data_version: str


@dataclasses.dataclass(frozen=True)
class _State:
    """Everything a request needs, replaced as a whole (never mutated) when the rollout moves."""

    rollout: registry.Rollout
    champion: _Loaded | None
    challenger: _Loaded | None
    pinned: bool = False  # set by reconfigure(user_config): the watcher leaves it alone


@dataclasses.dataclass(frozen=True)
class _Item:
    canary: bool
    request_id: str
    records: list[dict[str, Any]]  # as sent (validated); the log keeps the batch frame built from them
    body: bytes  # the request's JSON body, the records' source: what the log's journal keeps


@dataclasses.dataclass(frozen=True)
class _Answer:
    """One request's share of a batch's model call, as plain lists (one ``tolist`` per batch)."""

    version: int = 0
    route: str = ""  # empty: nothing answered it
    predictions: list[Any] = dataclasses.field(default_factory=list)
    probabilities: list[float] | None = None  # binary: of the positive class
    output: pd.DataFrame | None = None  # multiclass only: the per-class probability columns
    shadow_version: int | None = None
    shadow_predictions: list[Any] | None = None
    error: str | None = None  # the rows broke the model's schema (should have been a 422)


def _settle_heap() -> None:
    """Collect the garbage of a model swap, then exempt everything alive from later collections.

    Once the models are loaded the replica's heap holds about half a million
    long-lived objects (torch, pandas, Ray, FastAPI) that every full collection
    traverses again, many times a second under load (figures in
    ``benchmarks/README.md``, "Figures behind design choices"). ``gc.freeze`` moves them to a generation the
    collector skips, and a young generation of 10,000 objects (Python's default
    is 700) lets most of a request's objects die by reference count before
    any collection looks at them. Unfreezing first lets the previous model's
    cyclic garbage be collected instead of kept for good. The full collection
    here holds the GIL ~0.1 s (measured outside a replica, with the same
    imports), once per model swap.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def canary_bucket(request_id: str) -> float:
    """A request's stable position in [0, 1): the same id always takes the same route."""
    return zlib.crc32(request_id.encode()) / 2**32


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
        self.token_digest = _token_digest(config, token_sha256)
        for key, value in _MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.state = _State(registry.Rollout(config.name, None, None, 0.0, False), None, None)
        self._cache: dict[int, _Loaded] = {}
        # the ids this replica answered lately, and the key that marks ids this endpoint issued
        self._answered: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._id_key = hashlib.sha256(f"{config.name}|{config.inference_log_uri}".encode()).digest()[:16]
        self._stop = threading.Event()
        self.num_batches = 0
        self.num_batched_requests = 0
        self.max_batch_size_seen = 0
        self._metrics = _Metrics(config.name)
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
        self.refresh()
        self._watcher = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._watcher.start()

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

    def refresh(self) -> bool:
        """Re-read the rollout from the registry and swap models if it moved; True when it did."""
        if self.state.pinned:
            return False
        rollout = registry.rollout(self.config)
        current = self.state
        if (
            rollout == current.rollout
            and (current.champion.version if current.champion else None) == rollout.champion_version
        ):
            return False
        self._apply(rollout, pinned=False)
        return True

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Pin versions and weights from Serve's ``user_config`` (an empty dict follows the registry again).

        Keys: ``champion_version``, ``challenger_version``, ``canary_weight``, ``shadow``.
        """
        if not user_config:
            self.state = dataclasses.replace(self.state, pinned=False)
            self.refresh()
            return
        rollout = registry.Rollout(
            name=self.config.name,
            champion_version=user_config.get("champion_version"),
            challenger_version=user_config.get("challenger_version"),
            canary_weight=float(user_config.get("canary_weight", 0.0)),
            shadow=bool(user_config.get("shadow", False)),
        )
        self._apply(rollout, pinned=True)

    def _apply(self, rollout: registry.Rollout, *, pinned: bool) -> None:
        loaded_before = set(self._cache)
        champion = self._load(rollout.champion_version)
        challenger = self._load(rollout.challenger_version)
        self.state = _State(rollout, champion, challenger, pinned)  # one reference swap
        keep = {v for v in (rollout.champion_version, rollout.challenger_version) if v is not None}
        self._cache = {v: m for v, m in self._cache.items() if v in keep}
        if set(self._cache) != loaded_before:  # a model came or went; a new canary weight alone is no swap
            _settle_heap()
        _LOG.warning(
            "serving %s: champion %s, challenger %s (canary %.2f, shadow %s)",
            self.config.name,
            rollout.champion_version,
            rollout.challenger_version,
            rollout.canary_weight,
            rollout.shadow,
        )

    def _load(self, version: int | None) -> _Loaded | None:
        if version is None:
            return None
        if version in self._cache:
            return self._cache[version]
        ref = f"{self.config.name}/{version}"
        mv = registry.resolve(self.config, ref)
        loaded = _Loaded(
            version, registry.load_predictor(self.config, ref), mv.run_id, mv.tags.get("data.version", "")
        )
        self._cache[version] = loaded
        return loaded

    def _watch(self) -> None:
        """Follow the registry; while it does not answer, keep serving what is loaded and retry.

        Each failed refresh is counted (``raymlops_registry_errors``); the log
        says so once when the outage starts, at most once a minute while it
        lasts, and once when the registry answers again.
        """
        failing_since: float | None = None
        logged_at = 0.0
        while not self._stop.wait(self.serving.watch_interval_s):
            try:
                self.refresh()
            except Exception as e:  # the registry may be unreachable: the served models stay
                self._metrics.registry_errors.inc(tags={"error": type(e).__name__})
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - logged_at >= REGISTRY_ERROR_LOG_INTERVAL_S:
                    logged_at = now
                    _LOG.warning(
                        "model watcher: the registry did not answer for %.0f s (%s: %s); still serving "
                        "champion %s, retrying every %.1f s",
                        now - failing_since,
                        type(e).__name__,
                        str(e)[:300],
                        self.state.rollout.champion_version,
                        self.serving.watch_interval_s,
                    )
                continue
            if failing_since is not None:
                _LOG.warning(
                    "model watcher: the registry answers again after %.0f s", time.monotonic() - failing_since
                )
                failing_since, logged_at = None, 0.0

    def close(self) -> None:
        self._stop.set()
        if self.log:
            self.log.close()
        self.feedback.close()

    # ------------------------------------------------------------------ HTTP

    def authorize(self, request: Request) -> Response | None:
        if self.token_digest is None:
            return None
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        digest = hashlib.sha256(value.strip().encode()).digest()
        if scheme.lower() == "bearer" and hmac.compare_digest(digest, self.token_digest):
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
        request_id = raw.get("request_id") or self._issue_id(
            request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        )
        canary = (
            state.challenger is not None
            and not state.rollout.shadow
            and canary_bucket(request_id) < state.rollout.canary_weight
        )
        # the batch journals and buffers this request's log entry before any answer goes out
        received = await request.body()  # read by _parse already: Starlette's cached bytes
        answer: _Answer = await self.batched(_Item(canary, request_id, raw["records"], received))
        if answer.error is not None:
            return self._reject(422, "invalid", "records", answer.error)
        if not answer.route:  # the champion went away while the request waited for its batch
            return _json(503, {"error": "no model loaded", "detail": "the model changed; retry"})
        body = self._body(request_id, answer)
        self._answered[request_id] = None
        if len(self._answered) > _MAX_ANSWERED_IDS:
            self._answered.popitem(last=False)
        self._metrics.observe(answer, len(raw["records"]), (time.perf_counter() - start) * 1000)
        return _json(200, body, headers={"x-request-id": request_id})

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def batched(self, items: list[_Item]) -> list[_Answer]:
        """One model call for every request that arrived together (per route)."""
        state = self.state
        self.num_batches += 1
        self.num_batched_requests += len(items)
        self.max_batch_size_seen = max(self.max_batch_size_seen, len(items))
        self._metrics.batch_size.observe(len(items))
        answers: list[_Answer] = [_Answer() for _ in items]
        logged: list[LoggedBatch] | None = [] if self.log is not None else None
        routes = (("champion", state.champion, False), ("canary", state.challenger, True))
        # a challenger gone since the request picked its route: the champion answers it
        to_canary = [item.canary and state.challenger is not None for item in items]
        for route, loaded, canary in routes:
            index = [i for i, goes in enumerate(to_canary) if goes == canary]
            if not index or loaded is None:
                continue
            shadow = state.challenger if route == "champion" and state.rollout.shadow else None
            group = [items[i] for i in index]
            for i, answer in zip(
                index, self._predict_group(loaded, route, shadow, group, logged), strict=True
            ):
                answers[i] = answer
        if self.log is not None and logged:
            self.log.append_many(logged)  # one journal record for the whole batch
        return answers

    def _predict_group(
        self,
        loaded: _Loaded,
        route: str,
        shadow: _Loaded | None,
        items: list[_Item],
        logged: list[LoggedBatch] | None,
    ) -> list[_Answer]:
        """Answer requests of one route with one model call; their log entry goes to ``logged``."""
        # one frame for the whole batch: a DataFrame per request cost far more, a fifth of the
        # replica's time under load (benchmarks/README.md, "Figures behind design choices")
        big = pd.DataFrame.from_records(
            [record for item in items for record in item.records], columns=self.columns
        )
        try:
            # the request model already applied the schema's rules to every record
            output = loaded.predictor.predict_frame(big, checked=True)
            shadow_output = shadow.predictor.predict_frame(big, checked=True) if shadow else None
        except ValueError:
            if len(items) == 1:
                raise
            # one request's rows broke the model's schema: answer the others, blame that one
            return [self._predict_one(loaded, route, shadow, item, logged) for item in items]
        prediction_array = output["prediction"].to_numpy()
        probability_array = output["probability"].to_numpy() if self.task == "binary" else None
        shadow_array = shadow_output["prediction"].to_numpy() if shadow_output is not None else None
        if logged is not None:
            logged.append(
                LoggedBatch(
                    [item.request_id for item in items],
                    np.fromiter((len(item.records) for item in items), dtype=np.int64, count=len(items)),
                    np.full(len(items), now_us(), dtype=np.int64),
                    big,
                    loaded.version,
                    route,
                    prediction_array,
                    probability_array,
                    shadow.version if shadow else None,
                    shadow_array,
                    [item.body for item in items],
                )
            )
        predictions = prediction_array.tolist()
        probabilities = probability_array.tolist() if probability_array is not None else None
        shadows = shadow_array.tolist() if shadow_array is not None else None
        answers = []
        offset = 0
        for item in items:
            part = slice(offset, offset + len(item.records))
            offset += len(item.records)
            answers.append(
                _Answer(
                    loaded.version,
                    route,
                    predictions[part],
                    probabilities[part] if probabilities is not None else None,
                    output.iloc[part].reset_index(drop=True) if self.task == "multiclass" else None,
                    shadow.version if shadow else None,
                    shadows[part] if shadows is not None else None,
                )
            )
        return answers

    def _predict_one(
        self,
        loaded: _Loaded,
        route: str,
        shadow: _Loaded | None,
        item: _Item,
        logged: list[LoggedBatch] | None,
    ) -> _Answer:
        try:
            return self._predict_group(loaded, route, shadow, [item], logged)[0]
        except ValueError as e:
            return _Answer(error=str(e))

    def _body(self, request_id: str, answer: _Answer) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": request_id,
            "model_version": str(answer.version),
            "route": answer.route,
            "predictions": answer.predictions,
        }
        if self.task == "binary":
            body["probabilities"] = answer.probabilities
        elif self.task == "multiclass":
            output = answer.output
            assert output is not None
            columns = [c for c in output.columns if c.startswith("probability_")]
            body["probabilities"] = [
                {c[len("probability_") :]: p for c, p in zip(columns, row, strict=True)}
                for row in output[columns].itertuples(index=False)
            ]
        return body

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
        status = await self._prediction_status(request_id)
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

    def _issue_id(self, base: str) -> str:
        """An id for a request that brought none, marked so that any replica knows this endpoint issued it."""
        return f"{base}.{self._id_tag(base)}"

    def _id_tag(self, base: str) -> str:
        return hashlib.blake2b(base.encode(), key=self._id_key, digest_size=4).hexdigest()

    async def _prediction_status(self, request_id: str) -> str:
        """What became of the prediction a label is for: matched, pending or unknown.

        ``matched``: this replica answered it, or it is in the inference log.
        ``pending``: this endpoint issued the id (another replica answered it) and
        its log entry is on its way; the monitor joins the label when it lands.
        ``unknown``: a caller's own id found neither here nor in the log, after
        waiting one log flush for a prediction another replica just made.
        """
        if request_id in self._answered:
            return "matched"
        base, _, tag = request_id.rpartition(".")
        if base and hmac.compare_digest(tag, self._id_tag(base)):
            return "pending"
        if not self.serving.inference_log:
            return "pending"  # nothing to look in: kept, as before
        horizon_s = self.config.monitoring.dedup_horizon_s
        for wait_s in (0.0, self.serving.log_flush_interval_s + 0.5):
            await asyncio.sleep(wait_s)
            if await asyncio.to_thread(logged_recently, self.config.inference_log_uri, request_id, horizon_s):
                return "matched"
        return "unknown"

    def model_info(self) -> dict[str, Any]:
        state = self.state

        def describe(loaded: _Loaded | None) -> dict[str, Any] | None:
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


_MAX_ANSWERED_IDS = 100_000  # ~10 MB of ids: minutes of traffic at the rates measured here


def _tags(*keys: str) -> Any:
    return keys  # Ray's stubs say tuple[str]; any tuple of names works


class _Metrics:
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

    def observe(self, answer: _Answer, num_rows: int, latency_ms: float) -> None:
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


def token_sha256(config: ProjectConfig) -> str | None:
    """The SHA-256 of the bearer token in the driver's environment, or None.

    Replicas get only this digest and compare digests in constant time: the
    token itself never enters a runtime env, an actor's arguments or a Ray log.
    """
    name = config.serving.auth_token_env
    token = os.environ.get(name) if name else None
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def _token_digest(config: ProjectConfig, sha256_hex: str | None) -> bytes | None:
    """The digest a replica checks requests against: from the driver, else its own environment."""
    name = config.serving.auth_token_env
    if not name:
        return None
    if sha256_hex:
        return bytes.fromhex(sha256_hex)
    token = os.environ.get(name)
    if not token:
        # fail closed: a replica that was told to require a token never serves without one
        raise RuntimeError(
            f"serving.auth_token_env names {name!r}, but that environment variable is empty in the "
            "replica and in the process that deployed it; set it there (or remove serving.auth_token_env)"
        )
    return hashlib.sha256(token.encode()).digest()


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
            if not self.server._watcher.is_alive():
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
