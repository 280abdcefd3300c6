# smsgw — the SMS security gateway, as a non-root image.
# Mount the config at /etc/smsgw/config.toml (policies in /etc/smsgw/policies, TLS files where the
# config says) and pass secrets as environment variables or files referenced with env:/file:.
# It runs with a read-only root filesystem: give /tmp a tmpfs (metrics of the workers, and the pid
# file if server.pid_file points there) and /var/log/smsgw a volume (see deploy/compose.yaml).

# Any image with Python >= 3.11 as `python` on PATH, pip and useradd/groupadd will do; `make image`
# passes a base made from Debian's packages where no registry answers (deploy/podman/image.sh).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Optional extras, e.g. --build-arg EXTRAS="[aws]" for provider = "aws-sns" (SigV4 via botocore).
ARG EXTRAS=""

WORKDIR /opt/smsgw
# The dependencies first, in a layer that changes only with pyproject.toml: after a code change
# only the layers below are built again.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      >/tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY README.md ./
COPY gateway ./gateway
# The user and its group share one numeric id, so `user: "10001:10001"` and a volume owned by
# 10001:10001 name a group that exists; the log folder is 0750 (the gateway warns when the audit
# log's folder is wider).
RUN pip install ".${EXTRAS}" \
 && groupadd --system --gid 10001 smsgw \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/smsgw --no-create-home \
      --shell /usr/sbin/nologin smsgw \
 && install -d -m 0750 -o 10001 -g 10001 /var/lib/smsgw /var/log/smsgw \
 && install -d -m 0755 /etc/smsgw

# Numeric, so a runtime that checks `runAsNonRoot` can see it is not root.
USER 10001:10001
WORKDIR /var/lib/smsgw
# 8443: the public TLS listener; 9000: admin (/healthz, /readyz). Set [admin] listen = "0.0.0.0:9000"
# only if the orchestrator must reach it from outside the container, and keep it off public networks.
# Services of the same image that serve no admin port replace the check (the sandbox) or turn it
# off (one-shot jobs).
EXPOSE 8443 9000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["smsgw", "serve", "-c", "/etc/smsgw/config.toml"]
