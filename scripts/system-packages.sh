#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing:
#   postgresql  - the tests start their own throw-away cluster (initdb + pg_ctl)
#   iproute2    - network namespaces for the impaired-link tests
#   iperf3      - the benchmarks compare against its UDP figures
# Safe to run again: it installs only what is not there.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root to install them)" >&2
    exit 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
