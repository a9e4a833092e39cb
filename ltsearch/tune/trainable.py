"""The Tune function trainable of one-worker trials: config → the shared seed loop → the one loop → Parquet.

Thin on purpose (``ltsearch.tune.runner`` holds the seed loop it shares with DDP trials): per epoch
it reports metrics to Tune (``epoch`` is ASHA's time attribute). Checkpoints are the trial's own
(``RUN_DIR/checkpoints/<trial_id>.pt``, see ``ltsearch.trial``), not Tune's: after ``kill -9`` of
the driver, Tune's last saved experiment state can point at a trial checkpoint that ``num_to_keep``
has already deleted, and the restored trial then fails ("Could not recover from checkpoint"); a
file keyed by trial id has no such window.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from ltsearch.resolved import ResolvedTrial
from ltsearch.spec import spec_from_json
from ltsearch.trial import TrialContext, execute, split_config
from ltsearch.tune.runner import epoch_reporter, run_configuration

__all__ = ["tune_trial"]


def tune_trial(config: dict[str, Any], *, spec_json: str, run_dir: str, param_types: dict) -> None:
    spec = spec_from_json(spec_json)
    ctx = TrialContext(spec.name, run_dir, param_types)

    def train(trial: ResolvedTrial, report_epochs: bool) -> None:
        reporter = epoch_reporter(trial, tune.report) if report_epochs else None
        execute(trial, ctx, reporter=reporter, checkpoint_every=spec.search.checkpoint_every)

    run_configuration(spec, split_config(config), run_dir, train, tune.report)
