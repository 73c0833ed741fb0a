#!/usr/bin/env bash
# Installs the real third-party programs the end-to-end tests run against
# the balancer (Debian packages): a Redis server and its client, curl,
# openssl, gRPC for Python and a headless browser (chromium). Idempotent;
# run by scripts/test.sh.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
# A real gRPC implementation for the HTTP/2 upstream test; Debian's package
# lives in the system interpreter, which the test calls by path.
/usr/bin/python3 -c 'import grpc' 2>/dev/null || need+=(python3-grpcio)
# A real browser for the admin status page test.
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo)
echo "installing test dependencies: ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged Redis as a service where it can; the tests run
# their own on free ports and need none.
