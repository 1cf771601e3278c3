"""MLflow "models from code" entry: logged with every model instead of a pickled object."""

from mlflow.models import set_model

from raymlops.bundle import RayMLOpsModel

set_model(RayMLOpsModel())
