#!/usr/bin/env bash
# `hpo worker "$@"` as the first process of a container (Kubernetes Jobs): the signal that stops the
# pod (eviction, preemption, `kubectl delete`) reaches only this process, so it is handed on to the
# worker, which puts its trial back in the queue within seconds; the script then exits 143 instead of
# the worker's 0, so the Job sees a stopped pod (to be run again), not a finished one. A worker that
# ends without a signal (the study has its budget) keeps its own exit status.
#
# Not for Slurm: Slurm signals every process of a job itself, and a second SIGTERM would kill the
# worker outright; deploy/slurm/hpo-array.sbatch execs `hpo worker` instead.
set -u
HPO=${HPO_BIN:-hpo}
signalled=""
# shellcheck disable=SC2317  # called by the trap
forward() {
    signalled=1
    if [ -n "${pid:-}" ]; then kill -TERM "$pid" 2>/dev/null; fi
}
trap forward TERM INT
"$HPO" worker "$@" &
pid=$!
# `wait` returns early when a trapped signal arrives: wait again until the worker has really ended.
while :; do
    wait "$pid"
    status=$?
    kill -0 "$pid" 2>/dev/null || break
done
if [ -n "$signalled" ]; then
    exit 143
fi
exit "$status"
