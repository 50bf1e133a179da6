#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine:
# system packages (only the missing ones), then the project venv.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null 2>&1 || { echo "go is required to build the local control plane (Go >= 1.26)" >&2; exit 1; }
# Debian's prometheus package may start a system service on :9090; ours uses
# its own port and data dir, so the two never collide.
