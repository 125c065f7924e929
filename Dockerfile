# syntax=docker/dockerfile:1
# The pyner sidecar image: `pyner serve` with ONNX Runtime, no torch, no export stage, non-root.
#
#   docker build -t pyner-serve .                                   # CPU (python slim base)
#   docker build -t pyner-serve:gpu --build-arg VARIANT=gpu .        # onnxruntime-gpu on a CUDA runtime base
#   docker run -p 50051:50051 -p 9464:9464 -v $PWD/artifacts/demo:/models/artifact:ro pyner-serve
#
# Configure with PYNER_* environment variables (docs/serve.md); set PYNER_PORT rather than --port so
# the HEALTHCHECK probes the right port. The GPU variant also needs `--gpus all` and PYNER_PROVIDERS=cuda.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- bases: the build and runtime stages share one, so the virtual environment stays valid ----
FROM ${PYTHON_IMAGE} AS base-cpu
FROM ${CUDA_IMAGE} AS base-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
FROM base-${VARIANT} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# ---- build: runtime dependencies only (requirements/runtime.txt), generated gRPC code ----
FROM base AS build
ARG VARIANT
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/runtime.txt /tmp/requirements-runtime.txt
RUN pip install --no-cache-dir -r /tmp/requirements-runtime.txt \
 && if [ "$VARIANT" = "gpu" ]; then \
      ort="$(grep '^onnxruntime==' /tmp/requirements-runtime.txt | cut -d= -f3)"; \
      pip uninstall -y onnxruntime && pip install --no-cache-dir "onnxruntime-gpu==${ort}"; \
    fi
COPY pyner /opt/pyner/pyner
COPY proto /opt/pyner/proto
# grpcio-tools only compiles the .proto files here; it goes to a throwaway folder, not the image.
RUN grpcio="$(grep '^grpcio==' /tmp/requirements-runtime.txt | cut -d= -f3)" \
 && pip install --no-cache-dir --target /tmp/protoc "grpcio-tools==${grpcio}" \
 && rm -rf /opt/pyner/pyner/serve/_proto \
 && PYTHONPATH=/opt/pyner:/tmp/protoc python -m pyner.serve.protos \
 && rm -rf /tmp/protoc

# ---- runtime ----
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/pyner /opt/pyner
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/pyner PYNER_PORT=50051 PYNER_METRICS_PORT=9464
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin pyner
USER 10001:10001
WORKDIR /opt/pyner
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD ["python", "-m", "pyner.serve.healthcheck"]
ENTRYPOINT ["python", "-m", "pyner"]
CMD ["serve", "/models/artifact", "--host", "0.0.0.0"]
