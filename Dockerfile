FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY cli ./cli
COPY migrations ./migrations
RUN pip install --no-cache-dir '.[server]'
EXPOSE 8000
CMD ["lorareg", "serve", "--host", "0.0.0.0", "--port", "8000"]
