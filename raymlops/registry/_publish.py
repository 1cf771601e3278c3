"""Turning a training result into a registered pyfunc model version that holds the whole bundle."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymlops.config import ProjectConfig
from raymlops.errors import StorageError
from raymlops.registry._types import LINEAGE_TAGS

if TYPE_CHECKING:
    from raymlops.train import TrainResult

_PYFUNC_ENTRY = Path(__file__).with_name("_pyfunc_model.py")


def publish(client: Any, config: ProjectConfig, result: TrainResult) -> int:
    """Log ``result``'s bundle as a pyfunc model in its run, register it, tag its lineage.

    Models from code (``_pyfunc_model.py``), not a pickled object: a version
    then loads in any process that has raymlops, whatever changed in between.

    Raises:
        StorageError: the artifact store refused the files; nothing was registered.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from raymlops import __version__
    from raymlops.bundle import Predictor, write_bundle
    from raymlops.train import load_weights

    prepared = result.prepared
    model = load_weights(result)
    hp = result.hyperparameters
    spec = {
        "model_name": config.name,
        "task": config.model.task,
        "input_dim": prepared.feature_dim,
        "output_dim": result.output_dim,
        "hidden_sizes": list(hp["hidden_sizes"]),
        "dropout": hp["dropout"],
        "factory": hp["factory"],
        "label_classes": list(prepared.label_classes) if prepared.label_classes is not None else None,
        "schema": prepared.dataset_version.schema.model_dump(mode="json", by_alias=True),
        "train_run_id": result.run_id,
    }
    sample = prepared.test.take_batch(5, batch_format="pandas")
    example = pd.DataFrame(sample)[list(prepared.dataset_version.schema.feature_names)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_bundle(
                Path(tmp) / "bundle",
                spec=spec,
                preprocessor=prepared.preprocessor,
                state_dict=model.state_dict(),
                profile_json=prepared.profile.to_json(),
                metrics=result.metrics,
                dataset_version_json=prepared.dataset_version.to_json(),
            )
            predictor = Predictor.from_folder(folder)
            with warnings.catch_warnings():
                # "integer columns cannot hold missing values": the bundle coerces input types itself
                warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
                signature = infer_signature(example, predictor.predict_frame(example))
            with mlflow.start_run(run_id=result.run_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(_PYFUNC_ENTRY),
                    artifacts={"bundle": str(folder)},
                    signature=signature,
                    input_example=example,
                    registered_model_name=config.name,
                    pip_requirements=[
                        f"raymlops=={__version__}",
                        "ray[data]==2.60.*",
                        "torch",
                        "mlflow",
                        "pandas",
                        "pyarrow",
                    ],
                    await_registration_for=60,
                )
    except OSError as e:  # a full or read-only artifact store: no version was registered
        raise StorageError(
            f"cannot store the model's files for {config.name} under "
            f"{client.get_run(result.run_id).info.artifact_uri}: {e}. Nothing was registered; free "
            "space or fix the permissions and register again."
        ) from e
    version = int(info.registered_model_version)
    run_tags = client.get_run(result.run_id).data.tags
    tags = {key: run_tags[key] for key in LINEAGE_TAGS if key in run_tags}
    tags["raymlops.train_run_name"] = result.run_name
    tags["raymlops.num_attempts"] = str(result.num_attempts)
    for key, value in tags.items():
        client.set_model_version_tag(config.name, str(version), key, value)
    client.update_model_version(
        config.name,
        str(version),
        description=(
            f"Trained on {prepared.dataset_version.table_uri} version {prepared.dataset_version.version}; "
            f"best val_loss {result.metrics['val_loss']:.4f}."
        ),
    )
    return version
