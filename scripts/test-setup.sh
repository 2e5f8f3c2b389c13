#!/usr/bin/env bash
# Makes sure what the test suite needs is there: curl (a test streams with
# `curl -N`), Chromium (the agent example's page is tested in it, headless) and
# a running Docker engine for the plane's container tests, with gVisor (runsc)
# registered as a runtime: the plane runs function containers under it by
# default, and the sandbox tests expect it (docs/plane.md, gVisor).
# Installs and starts them where it can (as root, with apt); otherwise says
# what is missing and lets the tests report it. An engine it starts that will
# not come up fails the set-up (exit 1), with the end of the engine's log.
set -uo pipefail

# What is missing is installed in one apt-get run (a package index update is the slow part on a fresh machine).
# deploy/'s compose file is checked with `docker-compose config` (Debian's, which validates against the Compose
# specification's schema) when no `docker compose` plugin is there. The engine and gVisor only where no engine answers.
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  [ -x /usr/bin/runsc ] || missing+=(runsc)
fi
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = "0" ]; then
  echo "test setup: installing ${missing[*]} (Debian)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    # One that cannot be had does not keep the others out.
    for package in "${missing[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null || echo "test setup: could not install $package" >&2
    done
  fi
fi

DAEMON_CONFIG=/etc/docker/daemon.json
# gVisor's own network off: Docker's `--network none` alone fails under runsc ("cannot run with network enabled in
# root network namespace"); a function container has no network either way. --host-uds=open: a container connects to
# its plane's control socket, a host unix socket in a bound folder, which gVisor otherwise refuses (EPERM).
RUNSC_CONFIG='{"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--network=none","--host-uds=open"]}}}'

if docker info >/dev/null 2>&1; then
  if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
    echo "test setup: the running Docker engine has no runsc runtime; it is left as it is, the plane falls back to runc, and the tests that expect gVisor fail. Register runsc in $DAEMON_CONFIG ($RUNSC_CONFIG) and start dockerd with --config-file $DAEMON_CONFIG --experimental." >&2
  elif ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q -- '--host-uds=open'; then
    echo "test setup: the running Docker engine registers runsc without --host-uds=open; it is left as it is, the plane falls back to runc, and the tests that expect gVisor fail. Make runsc's entry in $DAEMON_CONFIG read $RUNSC_CONFIG and reload dockerd (kill -HUP)." >&2
  elif [ "$(docker info --format '{{.ExperimentalBuild}}' 2>/dev/null)" != "true" ]; then
    echo "test setup: the running Docker engine was started without --experimental; it is left as it is, memory snapshots (docker checkpoint) are off, and test/plane-snapshot.test.ts fails. Start dockerd with --experimental." >&2
  fi
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "test setup: no Docker engine answers, and only root can start one here; the plane tests will fail until one runs." >&2
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "test setup: no Docker engine (docker.io could not be installed); the plane tests will fail until one runs." >&2
  exit 0
fi
[ -x /usr/bin/runsc ] || echo "test setup: no runsc (gVisor); the plane will fall back to runc" >&2

mkdir -p /etc/docker
if [ ! -e "$DAEMON_CONFIG" ]; then
  echo "$RUNSC_CONFIG" >"$DAEMON_CONFIG"
elif ! grep -q -- '--host-uds=open' "$DAEMON_CONFIG"; then
  echo "test setup: $DAEMON_CONFIG has no runsc runtime with --host-uds=open and is left as it is; the plane falls back to runc. Make it: $RUNSC_CONFIG" >&2
fi

# No bridge and no iptables: containers use network "none" (or "host"), never a bridge address.
# --experimental: gVisor's checkpoint and restore (docker checkpoint) need it.
# An engine stopped without shutting down (the machine was) leaves its runtime state behind where /run is on disk, as
# on a virtual machine started again from its disk: pid files, and the records of the containers it ran with their
# processes' pids. A new dockerd that finds containerd's pid file takes it for running ("containerd is still running")
# when another process has that pid now, and waits for it in vain; and a new containerd "cleans up" each recorded
# gVisor container by killing its recorded pids (runsc delete), which after a fresh boot may be anyone's: once the new
# engine's own, which died starting, and every plane test failed. With no engine, shim or sandbox running, that state
# is stale, and is cleared as a reboot clears a /run in memory. The containers themselves (/var/lib/docker) stay: the
# engine finds them stopped.
if ! pgrep -x dockerd >/dev/null && ! pgrep -x containerd >/dev/null; then
  rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  pgrep -f 'containerd-shim|runsc-' >/dev/null ||
    rm -rf /var/run/docker/runtime-runc /var/run/docker/containerd/daemon/io.containerd.runtime.v2.task /run/containerd/s
fi

# An engine that dies starting is started once more; one that will not start stops the tests here, with its last words,
# rather than failing every plane test half an hour later.
mkdir -p /var/log
: >/var/log/dockerd.log
for try in 1 2; do
  echo "test setup: starting dockerd"
  nohup dockerd --config-file "$DAEMON_CONFIG" --bridge=none --iptables=false --experimental >>/var/log/dockerd.log 2>&1 &
  engine=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { echo "test setup: Docker engine ready"; exit 0; }
    kill -0 "$engine" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$engine" 2>/dev/null; then
    echo "test setup: dockerd did not answer in 30 s; /var/log/dockerd.log ends:" >&2
  else
    echo "test setup: dockerd exited while starting; /var/log/dockerd.log ends:" >&2
  fi
  tail -n 5 /var/log/dockerd.log >&2
  if [ "$try" = 1 ]; then
    kill "$engine" 2>/dev/null && sleep 2
    pgrep -x dockerd >/dev/null || rm -f /var/run/docker.pid
  fi
done
echo "test setup: no Docker engine could be started; the plane tests need one" >&2
exit 1
