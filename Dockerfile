# driftwatch image: the official Apache Airflow image plus the project's pinned requirements
# and its code. docker-compose.yaml builds it for every Airflow component and for MLflow.
#
#   docker compose build            # or: docker build -t driftwatch-airflow:local .
#
# requirements.txt pins apache-airflow itself; it must name the same version as the base image
# (the official docs install "apache-airflow==${AIRFLOW_VERSION}" next to the requirements so
# that pip can never swap Airflow for another version). A mismatch fails the build loudly.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

# The official image runs as the unprivileged "airflow" user (group 0); pip installs for it.
COPY --chown=airflow:0 requirements.txt /opt/driftwatch/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/driftwatch/requirements.txt

# What docker-compose.yaml relies on beyond the pipeline itself: CeleryExecutor, the Postgres
# drivers (psycopg2 for the metadata DB and MLflow, asyncpg for Airflow's async engine) and
# the Redis broker client. Fail the build here rather than at the first task.
RUN python -c "import airflow.providers.celery.executors.celery_executor_utils, psycopg2, asyncpg, redis, mlflow" \
    && airflow version

# The code is baked in, so the image runs as is on any host; docker-compose.yaml also
# bind-mounts these folders (read-only) so that a local edit shows up without a rebuild.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 config/ /opt/airflow/config/

# The image has no .git (see .dockerignore): the commit goes into every model's lineage from here.
#   docker compose build --build-arg GIT_COMMIT=$(git rev-parse HEAD)   (compose passes DRIFTWATCH_GIT_COMMIT)
ARG GIT_COMMIT=unknown
ENV DRIFTWATCH_GIT_COMMIT=${GIT_COMMIT}

ENV PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins \
    DRIFTWATCH_CONFIG_DIR=/opt/airflow/config/models \
    GX_ANALYTICS_ENABLED=false
