# LLM Studio's GUI in a container: `docker build -t h2o-llmstudio .`, then run it as the README
# says. BASE_IMAGE lets one file build both on public infrastructure (the default, a Debian image
# with Python 3.11) and on machines that cannot pull (`make docker-test` makes a Debian base
# with debootstrap). Only classic Dockerfile syntax: the legacy builder must build it too.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: the virtual environment and the prepared default backbone ---------------------------
FROM ${BASE_IMAGE} AS build

# Optional build inputs, empty in public builds (see the .gitignore in each folder):
# extra CA certificates (a TLS-inspecting proxy's) and local wheels to install from instead of PyPI.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180

# As `make setup` does: torch first (its pin read from requirements.txt, the one copy of the pins),
# then the rest; DS_BUILD_OPS=0 builds none of deepspeed's CUDA/C++ ops at install time.
COPY docker/wheels/ /tmp/wheels/
COPY requirements.txt /tmp/requirements.txt
RUN if ls /tmp/wheels/*.whl >/dev/null 2>&1; then \
        export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels; \
    fi \
    && python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install "$(grep '^torch==' /tmp/requirements.txt)" \
    && DS_BUILD_OPS=0 /opt/venv/bin/pip install -r /tmp/requirements.txt

# The default backbone goes to /workspace/.models (llm_studio/paths.py), outside data/ and
# output/, so that the guide's volume mounts cannot hide it. Only the files the conversion needs
# are copied first, so that a change elsewhere in the source does not redo it.
WORKDIR /workspace
COPY llm_studio/__init__.py llm_studio/paths.py llm_studio/env.py llm_studio/
COPY llm_studio/models/__init__.py llm_studio/models/offline_backbone.py llm_studio/models/
COPY scripts/prepare_default_backbone.py scripts/
RUN if ls /tmp/wheels/*.whl >/dev/null 2>&1; then \
        export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheels; \
    fi \
    && /opt/venv/bin/python scripts/prepare_default_backbone.py

# --- the image: the environment, the backbone and the source; no wheels, caches or tests -------
FROM ${BASE_IMAGE}

COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates

ARG LLMSTUDIO_UID=1000
RUN useradd --create-home --uid "${LLMSTUDIO_UID}" llmstudio \
    && mkdir -p /workspace/data /workspace/output /home/llmstudio/.cache \
    && chown llmstudio:llmstudio /workspace /workspace/data /workspace/output /home/llmstudio/.cache

COPY --from=build /opt/venv /opt/venv
COPY --from=build /workspace/.models /workspace/.models
# The app's files only (docker/wheels/ is a build input, tests stay out of the image).
COPY app.py train.py prompt.py publish_to_hugging_face.py distributed_train.sh pyproject.toml \
     requirements.txt Makefile README.md /workspace/
COPY llm_studio /workspace/llm_studio
COPY scripts /workspace/scripts
COPY examples /workspace/examples
COPY prompts /workspace/prompts
COPY docs /workspace/docs

# The launcher keeps waved's files in data/wave-files of the workdir (the mounted data/).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    H2O_LLM_STUDIO_HOST=0.0.0.0 \
    H2O_WAVE_LISTEN=0.0.0.0:10101

USER ${LLMSTUDIO_UID}
WORKDIR /workspace
EXPOSE 10101
# The GUI as `make llmstudio` starts it, listening on all interfaces of the container only (the
# host decides what to publish with -p). On `docker stop` it stops any running experiment,
# marks it stopped and ends within docker's 10 s.
CMD ["python", "scripts/docker_entrypoint.py"]
