#!/bin/sh
# Installs the Debian packages profiled needs to build and test, if missing.
# Idempotent; non-interactive. Prints the exact command when not root.
set -e
PKGS="gcc make pkg-config librdkafka-dev librocksdb-dev libcivetweb-dev libcjson-dev libxxhash-dev libssl-dev zlib1g-dev clang libclang-rt-14-dev python3 python3-xxhash curl kcat python3-kafka python3-confluent-kafka"
[ -n "$EXTRA_PKGS" ] && PKGS="$PKGS $EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "make deps: missing packages:$missing" >&2
        echo "make deps: run as root: apt-get update && DEBIAN_FRONTEND=noninteractive $cmd" >&2
        exit 1
    fi
fi
echo "make deps: installing$missing" >&2
${SUDO:-} env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
${SUDO:-} env DEBIAN_FRONTEND=noninteractive $cmd
