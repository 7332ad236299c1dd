# runner as a container image: `docker run … IMAGE run workflow.yml`.
#
# BASE_IMAGE is what the image runs on; BUILD_IMAGE, which must have the same
# Python with pip and venv, builds the wheel and installs it into /opt/runner.
ARG BASE_IMAGE=python:3.12-slim
ARG BUILD_IMAGE=${BASE_IMAGE}

FROM ${BUILD_IMAGE} AS build
# The classic builder keeps this stage as an untagged image: the label lets
# `docker image prune --filter label=dev.runner.image` find it, and superseded builds.
LABEL dev.runner.image=build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY runner ./runner
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python3 -m venv /opt/runner \
 && /opt/runner/bin/pip install --no-cache-dir /wheels/*.whl \
 && /opt/runner/bin/pip uninstall --yes pip \
 && find /opt/runner -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
LABEL dev.runner.image=runner
COPY --from=build /opt/runner /opt/runner
# Started as root, runner drops to the workspace's owner, keeping the Docker
# socket's group when that group may use it (see docs/container-image.md).
# Runs are kept in .runner in the working directory: the container's own file
# system goes with it, and the engine must reach the scratch directories of
# jobs; jobs see .runner as an empty, read-only directory.
ENV PATH=/opt/runner/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    RUNNER_DROP_PRIVILEGES=1 \
    RUNNER_STATE_DIR=.runner
ENTRYPOINT ["runner"]
CMD ["--help"]
