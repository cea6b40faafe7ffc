# hevlayer service image, used by compose.yaml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY consumers ./consumers
COPY service ./service
COPY scripts/fetch_dataset.py ./scripts/fetch_dataset.py
RUN pip install --no-cache-dir .
ENV HEVLAYER_HOST=0.0.0.0 \
    HEVLAYER_PORT=8080 \
    HEVLAYER_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
CMD ["hevlayer", "serve"]
