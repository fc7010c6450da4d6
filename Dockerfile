# hpo worker image: one image for launch, worker and dashboard.
# CPU or CUDA: torch 2.14.1 wheels from PyPI bundle CUDA; the host needs only the NVIDIA driver and
# the NVIDIA container toolkit for GPU workers.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=0 \
    HPO_YOLO_CONFIG_DIR=/var/lib/hpo/ultralytics

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpo ./hpo
RUN pip install torch==2.14.1 torchvision==0.29.1 && pip install .
COPY studies ./studies
# The worker wrapper of the Kubernetes Job (deploy/k8s/workers-job.yaml): hands SIGTERM on.
COPY deploy/hpo-worker.sh /usr/local/bin/hpo-worker

# Data, runs, weights and the SQLite/artifact storage are volumes (see docker-compose.yml).
VOLUME ["/app/datasets", "/app/runs", "/app/weights", "/app/storage"]
ENTRYPOINT ["hpo"]
CMD ["--help"]
