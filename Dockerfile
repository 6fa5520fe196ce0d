# One image for every return-notify service, built once (docker-compose.yml builds it for
# `migrate`; every other service runs the same image with its own `return-notify` command).
#
# Pinned: the base image by exact version tag (to pin its digest too, mirror it into your
# registry and refer to it as python@sha256:…, e.g. with `--build-arg PYTHON_IMAGE=`), and
# every Python file by its hash from requirements-docker.lock: the runtime dependencies, the
# `api` extra and the build backend, exported from uv.lock (.ci/run fails when it is stale;
# README "Upgrading dependencies"). Nothing is resolved or fetched unpinned at build time.
ARG PYTHON_IMAGE=python:3.11.16-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
RUN python -m venv /opt/rsn
ENV PATH=/opt/rsn/bin:$PATH
COPY requirements-docker.lock /tmp/requirements-docker.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements-docker.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY return_notify ./return_notify
# the build backend comes from the lock above, not from an isolated build environment
RUN pip install --no-deps --no-build-isolation . \
    && pip uninstall -y -q setuptools wheel

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/rsn/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# A numeric, unprivileged user (Kubernetes' runAsNonRoot can verify a number) owning only
# the state directories: beat's schedule and Flower's history (volumes mount over them and
# take their owner).
RUN groupadd --system --gid 10001 rsn \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/rsn \
       --shell /usr/sbin/nologin rsn \
    && mkdir -p /var/lib/rsn/beat /var/lib/rsn/flower \
    && chown -R 10001:10001 /var/lib/rsn
COPY --from=build /opt/rsn /opt/rsn
WORKDIR /var/lib/rsn
USER 10001:10001
ENTRYPOINT ["return-notify"]
CMD ["--help"]
