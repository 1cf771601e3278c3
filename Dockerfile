# raymlops on the matching Ray image. CPU by default; for GPU workers:
#   docker build --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu -t raymlops:0.1.0-gpu .
# The rayproject images run as the non-root user `ray` (uid 1000, set by number below) and ship Ray 2.60.
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${RAY_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

WORKDIR /home/ray/app
# dependencies first, so a code change does not reinstall them
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users raymlops/ raymlops/
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && pip install --no-cache-dir .
COPY --chown=ray:users jobs/ jobs/
COPY --chown=ray:users configs/ configs/
COPY --chown=ray:users cluster/ cluster/

USER 1000
ENV RAYMLOPS_HOME=/mnt/raymlops \
    RAY_AUTH_MODE=token
# the dashboard and the metrics port stay inside the pod network; see cluster/kuberay
EXPOSE 8000 8265 8080
CMD ["raymlops", "--help"]
