#!/usr/bin/env bash
# Makes sure what the test suite needs is there: curl (a test streams with
# `curl -N`), Chromium (the agent example's page is tested in it, headless) and
# a running Docker engine for the plane's container tests.
# Installs and starts them where it can (as root, with apt); otherwise says
# what is missing and lets the tests report it.
set -uo pipefail

if ! command -v curl >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "test setup: installing curl"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null || echo "test setup: could not install curl" >&2
fi

if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] && [ "$(id -u)" = "0" ]; then
  echo "test setup: installing chromium (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || echo "test setup: could not install chromium" >&2
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "test setup: no Docker engine answers, and only root can start one here; the plane tests will fail until one runs." >&2
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "test setup: installing docker.io (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null || {
    echo "test setup: could not install docker.io" >&2
    exit 0
  }
fi

# No bridge and no iptables: containers use network "none" (or "host"), never a bridge address.
echo "test setup: starting dockerd"
mkdir -p /var/log
nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "test setup: Docker engine ready"; exit 0; }
  sleep 0.5
done
echo "test setup: dockerd did not come up; see /var/log/dockerd.log" >&2
exit 0
