"""A training result that crosses a process boundary without Ray: its splits frozen to pandas."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd


@dataclasses.dataclass(frozen=True)
class FrozenRows:
    """The one Ray Dataset method ``registry.register`` uses (the example rows), over a pandas frame."""

    frame: pd.DataFrame

    def take_batch(self, batch_size: int, batch_format: str = "pandas") -> pd.DataFrame:
        assert batch_format == "pandas"
        return self.frame.head(batch_size)


def frozen_result(result: Any) -> Any:
    """``result`` with its splits replaced by their first rows, so it pickles without a cluster."""
    prepared = result.prepared
    test = FrozenRows(prepared.test.take_batch(20, batch_format="pandas"))
    return dataclasses.replace(
        result, prepared=dataclasses.replace(prepared, train=test, validation=test, test=test)
    )


def run_copy(result: Any, config: Any) -> Any:
    """``result`` as if trained in a new run of ``config``'s experiment (its tracking store, its artifacts).

    Registering writes the model's files into the run's artifact location; a
    test that needs them somewhere else (another store, a small disk) registers
    the copy. The weights still come from ``result``'s checkpoint.
    """
    from raymlops import runtime
    from raymlops._internal import tracking

    client = runtime.mlflow_client(config)
    run = client.create_run(
        tracking.experiment_id(config, client), run_name="copied", tags={"raymlops.stage": "train"}
    )
    client.set_terminated(run.info.run_id)
    return dataclasses.replace(result, run_id=run.info.run_id)
