"""Experiment loggers (``search.loggers``, default ``[json]``), all Ray Tune's own callbacks.

``json`` is on by default: it is cheap (one line per reported epoch in each trial's
``result.json``) and it is what Ray's ``ExperimentAnalysis(RUN_DIR/_tune)`` and
``Tuner.restore(...).get_results()`` read a trial's metrics from; without any result file their
``dataframe()`` is empty (and warns once per trial). ``loggers: []`` turns it off. ltsearch passes
these callbacks explicitly, so Tune's automatic loggers stay off (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``).

=============  ===============================================  ====================
name           callback                                         needs
=============  ===============================================  ====================
``csv``        ray.tune.logger.CSVLoggerCallback                 -
``json``       ray.tune.logger.JsonLoggerCallback                -
``tensorboard`` ray.tune.logger.TBXLoggerCallback                ``tensorboardX``
``mlflow``     ray.air.integrations.mlflow.MLflowLoggerCallback  ``mlflow`` ($MLFLOW_TRACKING_URI)
``wandb``      ray.air.integrations.wandb.WandbLoggerCallback    ``wandb`` ($WANDB_API_KEY)
=============  ===============================================  ====================

They write into each trial's directory under ``RUN_DIR/_tune`` (or to the tracking server).
``check_loggers`` runs before a sweep writes anything: a missing package, or an MLflow tracking URI
that names a file store (``file://`` or a bare path in ``$MLFLOW_TRACKING_URI``, which MLflow 3
refuses), is one ``error:`` line. Unset, MLflow 3.7+ tracks in ``sqlite:///mlflow.db``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from ltsearch.errors import UserError
from ltsearch.secrets import mask

NEEDS = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}


def check_loggers(names: list[str]) -> None:
    """Refuse (one ``UserError``) what would fail once the sweep has started."""
    if "mlflow" in names:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if uri and ("://" not in uri or uri.startswith("file:")):
            raise UserError(f"search.loggers: mlflow: MLFLOW_TRACKING_URI={mask(uri)!r} is a file store, which MLflow 3 "
                            "refuses; export MLFLOW_TRACKING_URI=sqlite:///mlflow.db (a database) or the address of "
                            "an MLflow server (http://host:5000)")
    for name in names:
        pkg = NEEDS.get(name)
        if pkg and importlib.util.find_spec(pkg) is None:
            raise UserError(f"search.loggers: {name!r} needs the {pkg} package; pip install {pkg} (or remove it)")


def build_loggers(names: list[str], project: str) -> list[Any]:
    check_loggers(names)
    out: list[Any] = []
    for name in names:
        if name == "csv":
            from ray.tune.logger import CSVLoggerCallback

            out.append(CSVLoggerCallback())
        elif name == "json":
            from ray.tune.logger import JsonLoggerCallback

            out.append(JsonLoggerCallback())
        elif name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            out.append(MLflowLoggerCallback(experiment_name=project))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            out.append(WandbLoggerCallback(project=project))
    return out
