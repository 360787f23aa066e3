# The sparsearch image: API, scheduler, Ray head and Ray workers all run it, so code and
# dependencies match across a cluster (Ray requires the same Ray and Python everywhere).
#
#   docker compose up --build        (see README.md, "Deploy with Docker Compose")
#
# torch comes from the PyTorch CPU index first: from PyPI it would be a multi-GB CUDA build.
# `pip install .` then finds torch==2.13.0 (the `+cpu` build satisfies the pin) already there.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Generated C models are measured as Cortex-M firmware: the Arm compiler and newlib build them,
# QEMU runs the exported C projects (`make run`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    && useradd --create-home --uid 1000 sparsearch \
    && mkdir -p /data/artifacts \
    && chown -R sparsearch:sparsearch /data
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/sparsearch-entrypoint

USER sparsearch
# Where artifacts go when nothing says otherwise; docker-compose.yml mounts a volume here.
ENV SPARSEARCH_ARTIFACT_DIR=/data/artifacts
EXPOSE 8000
ENTRYPOINT ["sparsearch-entrypoint"]
CMD ["sparsearch", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-scheduler"]
