#!/usr/bin/env bash
# scripts/setup.sh: install everything recsys and its test stack need, then build and
# install the extension. Run as root; idempotent: a second run takes seconds.
#
#   sudo bash scripts/setup.sh
#
# - Debian packages: PostgreSQL 15 with its server headers and pg_cron, the C libraries
#   recsys links (libcsv, jansson, libxml2, zlib, libcurl, librdkafka, hiredis), Redis,
#   kcat, valgrind, Java 17 and Maven, docker-compose (to validate docker/), R's dslabs (offline
#   MovieLens sample).
# - Kafka 3.9 broker jars from Maven Central (scripts/kafka/pom.xml), cached in ~/.m2.
# - MinIO built with `go install` at a pinned version, cached in Go's module and build
#   caches.
# - the OS user that runs the test stack (PostgreSQL refuses to run as root).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TOOLS=${RECSYS_TOOLS_DIR:-/opt/recsys-tools}
STACK_USER=${RECSYS_STACK_USER:-recsys}
# MinIO RELEASE.2026-02-12; the Go module proxy refuses @latest and some older
# pseudo-versions (RELEASE.2025-10-15's is not served), so pin one it serves.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

say() { printf '\n== setup: %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || { echo "setup: run as root (sudo bash scripts/setup.sh)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/go/bin"

PACKAGES=(
    build-essential postgresql-15 postgresql-server-dev-15 postgresql-15-cron
    libcsv-dev libjansson-dev libxml2-dev zlib1g-dev libcurl4-openssl-dev libssl-dev
    librdkafka-dev libhiredis-dev
    redis-server redis-tools kcat curl python3 ca-certificates valgrind procps unzip
    clang-14 libclang-rt-14-dev
    openjdk-17-jre-headless maven
    docker-compose r-cran-dslabs r-base-core
)

say "Debian packages"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "all ${#PACKAGES[@]} packages present"
fi
# Debian starts a default cluster and a system Redis; the stack runs its own.
for svc in postgresql redis-server; do
    if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
done

say "OS user $STACK_USER (runs the test stack)"
if ! id "$STACK_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$STACK_USER"
fi
id "$STACK_USER"

say "Kafka broker jars (Maven Central, cached in ~/.m2)"
mkdir -p "$TOOLS/kafka/libs" "$TOOLS/bin"
if ! compgen -G "$TOOLS/kafka/libs/kafka_2.13-*.jar" >/dev/null ||
    [ "$HERE/kafka/pom.xml" -nt "$TOOLS/kafka/libs" ]; then
    rm -rf "$TOOLS/kafka/libs"
    mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$TOOLS/kafka/libs"
fi
ls "$TOOLS/kafka/libs" | grep -E '^kafka_2.13-' || { echo "setup: Kafka jars missing" >&2; exit 1; }

say "MinIO $MINIO_VERSION (go install, cached in Go's caches)"
if [ "$(cat "$TOOLS/bin/minio.version" 2>/dev/null)" != "$MINIO_VERSION" ]; then
    command -v go >/dev/null || { echo "setup: Go is needed to build MinIO" >&2; exit 1; }
    GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
    install -m 0755 "$(go env GOPATH)/bin/minio" "$TOOLS/bin/minio"
    echo "$MINIO_VERSION" >"$TOOLS/bin/minio.version"
fi
"$TOOLS/bin/minio" --version | head -n 1
chmod -R a+rX "$TOOLS"

say "build and install recsys"
make -C "$REPO" -s
make -C "$REPO" -s install
echo "setup: done"
