"""The model bundle: everything needed to turn raw rows into predictions, without Ray.

A bundle folder holds the spec (task, sizes, classes, schema), the fitted Ray
Data preprocessor (serialised), the weights, the reference profile and the
training metrics. ``Predictor`` applies the same schema coercion as ingest, the
same preprocessor as training and the model, so MLflow's pyfunc, the serving
endpoint and a notebook all predict identically.

This module's path is recorded in every logged MLflow model (``RayMLOpsModel``):
keep it stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from mlflow.pyfunc import PythonModel

from raymlops.config import SchemaConfig
from raymlops.data import ERRORS_COLUMN, RAW_COLUMN, column_rules, compile_features, validate_batch

SPEC_FILE = "spec.json"
PREPROCESSOR_FILE = "preprocessor.cpkl"
WEIGHTS_FILE = "weights.pt"
PROFILE_FILE = "profile.json"
METRICS_FILE = "metrics.json"
DATASET_VERSION_FILE = "dataset_version.json"


def write_bundle(
    folder: Path,
    *,
    spec: dict[str, Any],
    preprocessor: Any,
    state_dict: dict[str, Any],
    profile_json: str,
    metrics: dict[str, float],
    dataset_version_json: str,
) -> Path:
    """Write a bundle folder (the inverse of ``Predictor.from_folder``)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True))
    (folder / PREPROCESSOR_FILE).write_bytes(preprocessor.serialize())
    torch.save(state_dict, folder / WEIGHTS_FILE)
    (folder / PROFILE_FILE).write_text(profile_json)
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=1, sort_keys=True))
    (folder / DATASET_VERSION_FILE).write_text(dataset_version_json)
    return folder


class Predictor:
    """Raw feature rows → predictions; needs torch and pyarrow, not a running Ray."""

    def __init__(self, spec: dict[str, Any], preprocessor: Any, model: Any) -> None:
        self.spec = spec
        self.preprocessor = preprocessor
        self._features = compile_features(preprocessor)
        self.model = model.eval()
        self.schema = SchemaConfig.model_validate(spec["schema"])
        self.rules = tuple(r for r in column_rules(self.schema, include_label=False) if r.role == "feature")
        self.task: str = spec["task"]
        self.classes: list[Any] | None = spec.get("label_classes")

    @classmethod
    def from_folder(cls, folder: str | Path) -> Predictor:
        import torch
        from ray.data.preprocessor import SerializablePreprocessorBase

        from raymlops.train import build_model

        folder = Path(folder)
        spec = json.loads((folder / SPEC_FILE).read_text())
        preprocessor = SerializablePreprocessorBase.deserialize((folder / PREPROCESSOR_FILE).read_bytes())
        model = build_model(
            spec["input_dim"],
            spec["output_dim"],
            tuple(spec["hidden_sizes"]),
            spec["dropout"],
            spec["factory"],
        )
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return cls(spec, preprocessor, model)

    @property
    def feature_names(self) -> list[str]:
        return [r.name for r in self.rules]

    def predict_frame(self, frame: pd.DataFrame, *, checked: bool = False) -> pd.DataFrame:
        """Predict for a DataFrame of raw feature values (extra columns are ignored).

        ``checked=True`` says the rows were already validated against this
        schema (the endpoint's request model does it with the same rules), so
        the Arrow validation pass is skipped when the NumPy feature path applies.

        Returns:
            ``prediction`` (a label value, or a number for regression) and, for
            classification, ``probability`` (binary: of the second class) or one
            ``probability_<class>`` column per class.

        Raises:
            ValueError: a feature is missing or a value breaks the schema, naming both.
        """
        import torch

        missing = [name for name in self.feature_names if name not in frame.columns]
        if missing:
            raise ValueError(f"missing feature column(s) {missing}; the model needs {self.feature_names}")
        if checked and self._features is not None:
            with torch.no_grad():
                return self._postprocess(self.model(torch.from_numpy(self._features(frame))))
        table = pa.Table.from_pandas(frame[self.feature_names], preserve_index=False)
        validated = validate_batch(table, self.rules)
        errors = validated.column(ERRORS_COLUMN)
        if errors.null_count != len(errors):
            bad = [(i, e) for i, e in enumerate(errors.to_pylist()) if e]
            shown = "; ".join(f"row {i}: {', '.join(e)}" for i, e in bad[:5])
            raise ValueError(f"{len(bad)} row(s) break the schema ({shown}); rules are rule:column")
        clean = validated.drop_columns([ERRORS_COLUMN, RAW_COLUMN]).to_pandas()
        features = self.features(clean)
        with torch.no_grad():
            out = self.model(torch.from_numpy(features))
        return self._postprocess(out)

    def features(self, clean: pd.DataFrame) -> np.ndarray:
        """Schema-clean rows → the model's float32 input matrix (the fitted preprocessing)."""
        if self._features is not None:
            return self._features(clean)
        transformed = self.preprocessor.transform_batch(clean)["features"].to_numpy()
        return np.stack(transformed).astype(np.float32)

    def _postprocess(self, out: Any) -> pd.DataFrame:
        import torch

        if self.task == "regression":
            return pd.DataFrame({"prediction": out.squeeze(-1).numpy().astype(np.float64)})
        classes = self.classes or []
        if self.task == "binary":
            probability = torch.sigmoid(out.squeeze(-1)).numpy().astype(np.float64)
            index = (probability >= 0.5).astype(int)
            return pd.DataFrame({"prediction": [classes[i] for i in index], "probability": probability})
        probabilities = torch.softmax(out, dim=1).numpy().astype(np.float64)
        result = pd.DataFrame({"prediction": [classes[i] for i in probabilities.argmax(axis=1)]})
        for j, label in enumerate(classes):
            result[f"probability_{label}"] = probabilities[:, j]
        return result


class RayMLOpsModel(PythonModel):
    """The MLflow pyfunc wrapper around a bundle folder (artifact ``bundle``)."""

    def load_context(self, context: Any) -> None:
        self._predictor = Predictor.from_folder(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self._predictor.predict_frame(model_input)
