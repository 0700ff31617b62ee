# syntax=docker/dockerfile:1
# Build: a static binary (no cgo), so the runtime image needs no libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/toolgate ./cmd/toolgate \
 && mkdir -p /out/data

# Run: distroless static, as a non-root user, with one volume for the database and CA.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/toolgate /usr/local/bin/toolgate
# The volume starts as this directory, so it must already belong to the user that writes it.
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
WORKDIR /data
# 8443: HTTPS, 2222: SSH, 9180: /healthz, /readyz, /metrics.
EXPOSE 8443 2222 9180
ENV TOOLGATE_DATA_DIR=/data \
    TOOLGATE_HTTPS_LISTEN=:8443 \
    TOOLGATE_SSH_LISTEN=:2222 \
    TOOLGATE_ADMIN_LISTEN=:9180
ENTRYPOINT ["/usr/local/bin/toolgate"]
CMD ["serve"]
