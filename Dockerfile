# raymlops on the matching Ray image. GPU variant:
#   docker build --build-arg RAY_IMAGE_TAG=2.60.0-py311-gpu -t raymlops:gpu .
ARG RAY_IMAGE_TAG=2.60.0-py311-cpu
FROM rayproject/ray:${RAY_IMAGE_TAG}

# The Ray image already runs as the non-root user "ray" with a writable home.
WORKDIR /home/ray/raymlops
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users raymlops ./raymlops
COPY --chown=ray:users jobs ./jobs
COPY --chown=ray:users configs ./configs
RUN pip install --no-cache-dir . \
    && raymlops --help > /dev/null

USER ray
ENV RAYMLOPS_HOME=/home/ray/raymlops-home
ENTRYPOINT []
CMD ["raymlops", "--help"]
