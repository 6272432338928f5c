# syntax=docker/dockerfile:1
# Two images from one file (see docker-compose.yaml):
#   airflow       Airflow 3 + the optout package: api-server, scheduler, dag-processor, triggerer,
#                 Celery worker, and the national-service stand-in (`optout sandbox serve`).
#   mesh-sandbox  NHS England's mesh-sandbox in a virtualenv of its own: it pins a FastAPI that Airflow
#                 refuses (requirements-mesh-sandbox.txt), so it can never share the Airflow image.

FROM python:3.11-slim-bookworm AS mesh-sandbox
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-mesh-sandbox.txt /tmp/requirements-mesh-sandbox.txt
RUN python -m venv /opt/mesh-sandbox \
    && /opt/mesh-sandbox/bin/pip install -r /tmp/requirements-mesh-sandbox.txt \
    && useradd --system --uid 50001 mesh
ENV PATH=/opt/mesh-sandbox/bin:$PATH
USER mesh
EXPOSE 8700
CMD ["python", "-m", "uvicorn", "mesh_sandbox.api:app", "--host", "0.0.0.0", "--port", "8700"]


FROM python:3.11-slim-bookworm AS airflow
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    OPTOUT_HOME=/opt/airflow/optout \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/optout/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/optout/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
WORKDIR /opt/optout
# Dependencies first (exact pins), so code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY plugins ./plugins
COPY dags ./dags
COPY include ./include
# The package itself (entry points: plugin, policy, provider, `optout` CLI); dependencies are already pinned.
RUN pip install --no-deps . \
    && useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow \
    && mkdir -p /opt/airflow/optout /opt/airflow/logs \
    && chown -R airflow:0 /opt/airflow \
    && chmod 0700 /opt/airflow/optout
USER airflow
CMD ["airflow", "version"]
