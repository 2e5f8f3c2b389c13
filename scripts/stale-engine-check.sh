#!/usr/bin/env bash
# Checks by hand (as root; it kills the running Docker engine) that scripts/test-setup.sh starts an engine over the
# state a machine stopped mid-run leaves where /run is on disk, without killing a bystander. A gVisor container is
# started, the engine and everything of it killed as a machine's stop would, and the container's recorded pids (runsc's
# state) pointed at a bystander process, as a fresh boot's reused pids may be; then the set-up runs.
# Exit 0: the bystander lives and the engine answers. Before the set-up cleared that state, the bystander was killed.
set -u
cd "$(dirname "$0")/.."
image=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v ':step-' | grep '^tandem-image:' | head -1)
[ -n "$image" ] || { echo "no tandem-image to start (run the tests once)" >&2; exit 2; }
docker rm -f stale-engine-check >/dev/null 2>&1
docker run -d --runtime runsc --network none --name stale-engine-check "$image" sleep 600 >/dev/null || exit 2
sleep 2
pkill -9 -x dockerd; pkill -9 -x containerd; pkill -9 -f containerd-shim; pkill -9 -f 'runsc-'
while pgrep -f 'dockerd|containerd|runsc-' >/dev/null; do sleep 0.2; done
sleep 1000 &
bystander=$!
state=$(ls /run/docker/runtime-runc/moby/*.state | head -1)
node -e 'const fs=require("fs"),[f,pid]=process.argv.slice(1),s=JSON.parse(fs.readFileSync(f));s.sandbox.pid=s.goferPid=+pid;fs.writeFileSync(f,JSON.stringify(s))' "$state" "$bystander"
bash scripts/test-setup.sh
sleep 3
ok=0
if kill -0 "$bystander" 2>/dev/null; then echo "bystander alive"; kill "$bystander"; else echo "bystander killed" >&2; ok=1; fi
if docker info >/dev/null 2>&1; then echo "engine answers"; else echo "engine down" >&2; ok=1; fi
docker rm -f stale-engine-check >/dev/null 2>&1
exit $ok
