# syntax=docker/dockerfile:1
#
# CoTePT SFU image: `docker build -t ocir.ap-seoul-1.oci.oraclecloud.com/cotept/sfu:TAG .`
#
# Two stages on the same base, so the venv's interpreter link (/usr/local/bin/python3.11)
# resolves in the runtime stage. The build stage makes a wheel of the project and installs it,
# with its dependencies, into /opt/venv; the runtime stage copies only that venv. aiortc, av,
# pylibsrtp, cryptography and uvloop come as manylinux wheels that carry their own libraries
# (they need only glibc, libstdc++, libgcc_s and zlib, all in the slim base), so the runtime
# stage installs no Debian package and has no compiler. tests/deploy/ checks what can be
# checked without a Docker engine.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sfu ./sfu
# Dependencies must come as wheels (--only-binary): a missing wheel fails the build here
# instead of compiling against libraries the runtime stage would not have. The `oci` extra is
# OCI's SDK, which the lifecycle job and storage analytics use for tiers and restores
# (oci:// storage URLs); the SFU and the VOD worker never import it.
RUN python -m venv /opt/venv \
 && python -m pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --only-binary=:all: "$(ls /wheels/*.whl)[oci]" \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="cotept-sfu" \
      org.opencontainers.image.description="CoTePT media plane: WebRTC SFU on aiohttp and aiortc"
# A fixed numeric UID/GID: Kubernetes' runAsNonRoot can only verify a numeric USER, and
# k8s/sfu-deployment.yaml runs as the same 10001.
RUN groupadd --system --gid 10001 sfu \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sfu
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SFU_HTTP_HOST=0.0.0.0 \
    SFU_HTTP_PORT=8080 \
    SFU_LOG_JSON=true
# config/sfu.toml is read relative to the working directory: mount one at /app/config/sfu.toml
# (or point SFU_CONFIG_FILE at a file) to configure by file instead of SFU_* variables.
WORKDIR /app
USER 10001:10001
# HTTP (REST, /ws, probes, metrics), embedded STUN, WebRTC media (SFU_RTC_PORT_MIN..MAX).
EXPOSE 8080/tcp 3478/udp 50000-50200/udp
# No curl in a slim image: the interpreter asks /health itself (any non-2xx or no answer
# raises, so the exit status is 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SFU_HTTP_PORT', '8080') + '/health', timeout=4)"]
# Exec form: `sfu` is PID 1 and gets the SIGTERM itself (first: drain, second: stop now).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sfu"]
CMD ["serve"]
