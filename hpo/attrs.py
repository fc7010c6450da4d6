"""Every study and trial attribute key hpo writes, and what a retried trial inherits.

Attributes are hpo's record in the storage: later commands (``status``, ``export``, ``retrain``,
``report``) and the dashboard read them back, possibly with another version of hpo, so the keys
live here, in one place, and nowhere as string literals. Keys without the ``hpo:`` prefix are the
ones users see on the dashboard next to Optuna's own columns (metrics, epochs, reasons).
"""

from __future__ import annotations

from typing import Any

# --- study attributes (user attrs of the study) -----------------------------------------------
STUDY_SPEC = "hpo:spec"  # the validated study spec (JSON)
STUDY_SAMPLER = "hpo:sampler"
STUDY_PRUNER = "hpo:pruner"
STUDY_BUDGET = "hpo:trials"  # study-wide budget of finished trials (key kept for stored studies)
STUDY_EPOCH_BUDGET = "hpo:epoch_budget"  # study-wide budget of epochs trained (None: trials alone)
STUDY_OBJECTIVE = "hpo:objective"  # the primary objective
STUDY_OBJECTIVES = "hpo:objectives"  # every objective, primary first
STUDY_FINAL = "hpo:final"  # the record of `hpo retrain`
STUDY_ARTIFACT_ERROR = "hpo:artifact_error"
WORKER_STOPPED_PREFIX = "hpo:worker_stopped:"  # + worker name: why a worker gave up (failures, infeasible cap)
GA_CLAIM_PREFIX = "ga:claim:"  # study system attr + hash of a point: the GA's atomic claim (one per point)
REQUEUE_CLAIM_PREFIX = "hpo:requeued:"  # + trial id: the one process that re-queues a lost trial

# --- trial user attributes: how and where one run of a trial happened ---------------------------
BASE_TRIAL = "hpo:base"  # marks the enqueued base hyps (trial 0)
WORKER = "hpo:worker"  # "host#index" of the worker that ran it
DIR = "hpo:dir"  # the trial's run folder (weights, results.csv, hyp.yaml)
EPOCH_METRICS = "hpo:epoch_metrics"  # every epoch's metrics so far, for resuming
RETRY_OF = "hpo:retry_of"  # the trial number this one retries
RESUME_FROM = "hpo:resume_from"  # checkpoint a retry continues from
RESUMED = "hpo:resumed"  # where a retry really resumed from (or why it restarted)
SURPLUS = "hpo:surplus"  # lost the race for the last budget slot: nothing trained
UNTRAINED = "hpo:untrained"  # pruned before training (a cost constraint broken): not counted against the budget
ARTIFACT_ERROR = "hpo:artifact_error"  # artifact upload failed (the training still counts)
SCREEN = "hpo:screen"  # the screen pruner's short schedule: {"epochs", "value", "values", "promoted", "why"}
DUPLICATE_OF = "hpo:duplicate_of"  # the sampler re-proposed this trained trial's hyps: its result reused, nothing trained
RETRIES_EXHAUSTED = "hpo:retries_exhausted"  # handed back or lost, but retried --max-retry times already
FAIL_REASON = "fail_reason"
PRUNED_REASON = "pruned_reason"
EPOCHS = "epochs"
TRAIN_SECONDS = "train_seconds"
WEIGHT_BYTES = "weight_bytes"
FINAL_METRICS = "final_metrics"  # Ultralytics' final validation of best.pt
LAST_EPOCH_METRICS = "last_epoch_metrics"
VAL_SUBSET = "hpo:val_subset"  # per epoch: validated on the study's val_fraction subset (pruning only)
VAL_IMAGES = "hpo:val_images"  # per epoch: images that epoch's validation saw
# The best epoch's metrics are stored under the metric names themselves (see METRIC_NAMES in
# hpo.search.objective): precision, recall, map50, map75, map50-95, fitness.
# Deployment costs (hpo.search.cost), likewise under their metric names:
LATENCY_MS = "latency_ms"  # median ms per image, batch 1, the trial's imgsz, on the deploy device
PARAMS = "params"  # parameters of the built model
GFLOPS = "gflops"  # GFLOPs at the trial's imgsz
WEIGHTS_MB = "weights_mb"  # size of the fp16-stripped best.pt in MB (1e6 bytes); before training an estimate
COST = "hpo:cost"  # how the costs were measured: device, dtype, runs, warm-up, threads, imgsz, sources
FEASIBLE = "feasible"  # every constraint met (absent: the study has none); the values samplers read are
#                       Optuna's own (Trial.set_constraint, FrozenTrial.constraints)
VIOLATIONS = "violations"  # the constraints a trial breaks, in words

# --- trial system attributes ---------------------------------------------------------------------
RETRY_HISTORY = "retry_history"  # numbers of the failed trials this retry descends from
FAILED_TRIAL = "failed_trial"  # the first trial of that history (Optuna's own key)
FIXED_PARAMS = "fixed_params"  # Optuna: params of an enqueued trial
CREATE_TOKEN = "hpo:create_token"  # unique per created trial: a retried create finds its own trial
CLAIM_TOKEN = "hpo:claim_token"  # unique per claim of a queued trial: a retried claim finds its own
GA_PROPOSAL = "ga:proposal"  # the GA's claim on a point, recorded the moment it proposes it

#: What a retried trial takes over from the trial it retries: the user attributes that describe its
#: hyps and history. Everything else describes one run (where, how far, why it ended, what an upload
#: said) and must start afresh, or a retry would show its predecessor's failure as its own.
INHERITED_BY_RETRY = frozenset({BASE_TRIAL})

#: What a re-proposed trial does not take over from its trained twin (see :data:`DUPLICATE_OF`): where and
#: how that one ran. Its metrics, costs and constraints are the twin's.
NOT_REUSED = frozenset({BASE_TRIAL, WORKER, DIR, EPOCHS, TRAIN_SECONDS, WEIGHT_BYTES, ARTIFACT_ERROR, RETRY_OF,
                        RESUME_FROM, RESUMED, RETRIES_EXHAUSTED, EPOCH_METRICS, VAL_SUBSET, VAL_IMAGES, SCREEN})


def inherited(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The user attributes a retry of a trial with ``user_attrs`` starts with."""
    return {k: v for k, v in user_attrs.items() if k in INHERITED_BY_RETRY}
