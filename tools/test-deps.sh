#!/usr/bin/env bash
# System tools that `make test` drives for real (their tests fail, never skip, without them), installed
# from Debian's packages when missing; silent when everything is there. Called by `make test`.
#   chromium, chromedriver   the dashboard test (selenium is pointed at /usr/bin/chromedriver)
#   docker-compose (1.29)    validates docker-compose.yml offline
#   the ShellCheck linter    for deploy/slurm/hpo-array.sbatch and deploy/hpo-worker.sh
# Python-side test tools (pytest, selenium, kubernetes-validate) come from pyproject's [test] extra.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x "${TEST_DEPS_CHROMEDRIVER:-/usr/bin/chromedriver}" ] || missing+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "make test needs these Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make test needs: ${missing[*]} (no apt-get here: install them with your package manager)" >&2
    exit 1
fi
echo "installing test tools: ${missing[*]}" >&2
log=$(mktemp)
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
