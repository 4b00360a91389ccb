# The hub and the action server share this image; Rasa has its own (docker/rasa.Dockerfile).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    HUB_HOST=0.0.0.0 HUB_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub hub
COPY channels channels
COPY bot bot
COPY knowledge_base knowledge_base
# torch first (use your mirror's CPU build to keep the image small), then the hub.
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir .
VOLUME /data
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["hub", "serve"]
