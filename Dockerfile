# syntax=docker/dockerfile:1

# Build stage: resolve the frozen lock into a virtual environment, without dev
# dependencies. uv comes from its own image, pinned.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_CACHE_DIR=/uv-cache \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first, in their own layer: code changes do not reinstall them.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/uv-cache \
    uv sync --frozen --no-dev --no-install-project
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app

# Runtime stage: the interpreter, the environment and the code, nothing else.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app \
    && mkdir /data \
    && chown app:app /data
WORKDIR /app
COPY --from=build --chown=app:app /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data
USER 10001:10001
EXPOSE 8000
# Straight to this container, past any proxy set in the environment (urllib would
# otherwise send even 127.0.0.1 through HTTP_PROXY).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
# Exec form: no shell in between, so SIGTERM reaches uvicorn and the graceful
# shutdown grace (SHUTDOWN_GRACE_SECONDS) applies.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
