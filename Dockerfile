# smsgw — the SMS security gateway, as a non-root image.
# Mount the config at /etc/smsgw/config.toml (policies in /etc/smsgw/policies, TLS files where the
# config says) and pass secrets as environment variables or files referenced with env:/file:.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Optional extras, e.g. --build-arg EXTRAS="[aws]" for provider = "aws-sns" (SigV4 via botocore).
ARG EXTRAS=""

WORKDIR /opt/smsgw
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install ".${EXTRAS}" \
 && useradd --system --uid 10001 --home-dir /var/lib/smsgw --create-home --shell /usr/sbin/nologin smsgw \
 && mkdir -p /etc/smsgw /var/log/smsgw \
 && chown smsgw:smsgw /var/log/smsgw

USER smsgw
WORKDIR /var/lib/smsgw
# 8443: the public TLS listener; 9000: admin (/healthz, /readyz). Set [admin] listen = "0.0.0.0:9000"
# only if the orchestrator must reach it from outside the container, and keep it off public networks.
EXPOSE 8443 9000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9000/healthz', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["smsgw", "serve", "-c", "/etc/smsgw/config.toml"]
