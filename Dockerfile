# The image config/k8s-indexed-job.yaml runs: `docker build -t sensit-harvester:0.1.0 .`
# Built by `make install-runtime`, the same pinned pip steps (requirements-dev.lock) as
# `make install`, so what CI tests is what the image holds. The native reader is compiled in
# the build stage; the final stage has no compiler, no pip cache, and runs as a non-root user.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile pyproject.toml setup.py MANIFEST.in README.md requirements-dev.lock ./
COPY harvester ./harvester
RUN make install-runtime VENV=/opt/harvester PYTHON=python3 \
    && /opt/harvester/bin/python -c \
        "from harvester.records.native_reader import NATIVE; assert NATIVE, 'no native reader'"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/harvester harvester
COPY --from=build /opt/harvester /opt/harvester
ENV PATH=/opt/harvester/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1
USER 10001
WORKDIR /home/harvester
ENTRYPOINT ["harvester"]
CMD ["--help"]
