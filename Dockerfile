# One image for every return-notify service; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY return_notify ./return_notify
RUN pip install --no-cache-dir ".[api]" && useradd --system --uid 1000 rsn
USER rsn
ENTRYPOINT ["return-notify"]
