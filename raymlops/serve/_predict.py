"""One model call per batch of requests, cut back into each request's answer."""

import dataclasses
import logging
import math
import time
import zlib
from typing import Any

import numpy as np
import pandas as pd

from raymlops.contracts.logs import ROUTE_CANARY, ROUTE_CANARY_FALLBACK
from raymlops.serve._log import LoggedBatch, now_us
from raymlops.serve._models import Loaded


@dataclasses.dataclass(frozen=True)
class Item:
    canary: bool
    request_id: str
    records: list[dict[str, Any]]  # as sent (validated); the log keeps the batch frame built from them
    body: bytes  # the request's JSON body, the records' source: what the log's journal keeps


@dataclasses.dataclass(frozen=True)
class Answer:
    """One request's share of a batch's model call, as plain lists (one ``tolist`` per batch)."""

    version: int = 0
    route: str = ""  # empty: nothing answered it
    predictions: list[Any] = dataclasses.field(default_factory=list)
    probabilities: list[float] | None = None  # binary: of the positive class
    output: pd.DataFrame | None = None  # multiclass only: the per-class probability columns
    shadow_version: int | None = None
    shadow_predictions: list[Any] | None = None
    error: str | None = None  # the rows broke the model's schema (should have been a 422)


_LOG = logging.getLogger("raymlops.serve")


def canary_bucket(request_id: str) -> float:
    """A request's stable position in [0, 1): the same id always takes the same route."""
    return zlib.crc32(request_id.encode()) / 2**32


class BatchPredictor:
    """Builds one frame per route and batch, calls the model once, splits the answers."""

    def __init__(self, columns: list[str], task: str) -> None:
        self.columns = columns
        self.task = task

    def predict_group(
        self,
        loaded: Loaded,
        route: str,
        shadow: Loaded | None,
        items: list[Item],
        logged: list[LoggedBatch] | None,
    ) -> list[Answer]:
        """Answer requests of one route with one model call; their log entry goes to ``logged``."""
        # one frame for the whole batch: a DataFrame per request cost far more, a fifth of the
        # replica's time under load (benchmarks/README.md, "Figures behind design choices")
        big = pd.DataFrame.from_records(
            [record for item in items for record in item.records], columns=self.columns
        )
        canary = route == ROUTE_CANARY and shadow is not None
        try:
            # the request model already applied the schema's rules to every record
            if canary:  # the champion first: its ValueError means the rows broke the schema
                assert shadow is not None
                shadow_output = shadow.predictor.predict_frame(big, checked=True)
                started = time.perf_counter()
                try:
                    output = loaded.predictor.predict_frame(big, checked=True)
                except Exception as e:  # the challenger failed where the champion did not
                    _LOG.warning("canary version %s failed on %d rows: %s", loaded.version, len(big), e)
                    return self._fallback(shadow, loaded, items, big, shadow_output, logged)
            else:
                started = time.perf_counter()
                output = loaded.predictor.predict_frame(big, checked=True)
                shadow_output = shadow.predictor.predict_frame(big, checked=True) if shadow else None
            model_ms = (time.perf_counter() - started) * 1000
        except ValueError:
            if len(items) == 1:
                raise
            # one request's rows broke the model's schema: answer the others, blame that one
            return [self._predict_one(loaded, route, shadow, item, logged) for item in items]
        return self._answers(loaded, route, shadow, items, big, output, shadow_output, logged, model_ms)

    def _fallback(
        self,
        champion: Loaded,
        challenger: Loaded,
        items: list[Item],
        big: pd.DataFrame,
        output: pd.DataFrame,
        logged: list[LoggedBatch] | None,
    ) -> list[Answer]:
        """The champion's answers to canary requests the challenger failed on, logged against it."""
        answers = self._answers(champion, ROUTE_CANARY_FALLBACK, None, items, big, output, None, logged)
        if logged is not None:  # the failure is the challenger's: the log row names it
            logged[-1] = logged[-1]._replace(shadow_version=challenger.version)
        return answers

    def _answers(
        self,
        loaded: Loaded,
        route: str,
        shadow: Loaded | None,
        items: list[Item],
        big: pd.DataFrame,
        output: pd.DataFrame,
        shadow_output: pd.DataFrame | None,
        logged: list[LoggedBatch] | None,
        model_ms: float = math.nan,
    ) -> list[Answer]:
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
                    model_ms,
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
                Answer(
                    loaded.version,
                    route,
                    predictions[part],
                    probabilities[part] if probabilities is not None else None,
                    output.iloc[part].reset_index(drop=True) if self.task == "multiclass" else None,
                    shadow.version if shadow and route != ROUTE_CANARY else None,
                    shadows[part] if shadows is not None and route != ROUTE_CANARY else None,
                )
            )
        return answers

    def _predict_one(
        self,
        loaded: Loaded,
        route: str,
        shadow: Loaded | None,
        item: Item,
        logged: list[LoggedBatch] | None,
    ) -> Answer:
        try:
            return self.predict_group(loaded, route, shadow, [item], logged)[0]
        except ValueError as e:
            return Answer(error=str(e))

    def body(self, request_id: str, answer: Answer) -> dict[str, Any]:
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
