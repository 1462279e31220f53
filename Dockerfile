# The user-code image of vault-pipeline (docs/deployment.md). One image for every role:
#   default              `dagster api grpc` code server: the Helm chart's user-code deployment, and the
#                        K8sRunLauncher's run pods (the chart gives them the same image)
#   dagster-daemon run -w /opt/vault-pipeline/workspace.yaml
#   dagster-webserver -h 0.0.0.0 -p 3000 -w /opt/vault-pipeline/workspace.yaml
#   vault-pipeline worker --name NAME          (Celery worker; mount deploy/dagster-celery.yaml as
#                                               $DAGSTER_HOME/dagster.yaml)
# No secret is baked in: every setting comes from the environment at run time (README.md, "Configuration").
# Runtime dependencies are exactly requirements/runtime.lock, each file checked against its SHA-256.

# Both stages: the same base pinned to a patch release, written out (not an ARG) so that hadolint checks it.
# Append @sha256:<digest> for a byte-reproducible base (`docker buildx imagetools inspect <image>` gives it).
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
# The lock first: this layer is rebuilt only when the lock changes, not on every code change.
COPY requirements/runtime.lock requirements/runtime.lock
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime.lock
# Then the project alone. Its build backend (setuptools, wheel) is fetched by pip's build isolation in
# this stage only; the final image gets the locked dependencies and this package, nothing else.
COPY pyproject.toml setup.cfg README.md ./
COPY vault_pipeline vault_pipeline
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/python -c "import vault_pipeline.definitions"

FROM python:3.11.13-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    VAULT_SPOOL_DIR=/var/lib/vault-pipeline/spool
# A fixed uid/gid: USER is numeric so that Kubernetes can check runAsNonRoot, and volumes can name it.
RUN groupadd --system --gid 10001 vault \
    && useradd --system --uid 10001 --gid vault --home-dir /var/lib/vault-pipeline --create-home \
       --shell /usr/sbin/nologin vault \
    && mkdir -p /var/lib/vault-pipeline/spool /opt/dagster/dagster_home \
    && chown vault:vault /var/lib/vault-pipeline/spool
COPY --from=build /opt/venv /opt/venv
# The instance and workspace files are configuration, not secrets (they name environment variables only).
# Read-only for the service user; Kubernetes mounts the chart's own dagster.yaml over this one.
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY workspace.yaml /opt/vault-pipeline/workspace.yaml
USER 10001:10001
WORKDIR /var/lib/vault-pipeline
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-m", "vault_pipeline.definitions", "-h", "0.0.0.0", "-p", "3030"]
