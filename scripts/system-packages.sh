#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing:
#   postgresql  - the tests start their own throw-away cluster (initdb + pg_ctl)
#   iproute2    - network namespaces for the impaired-link tests
#   iperf3      - the benchmarks compare against its UDP figures
#   prometheus  - promtool checks configs/prometheus (config, alert rules and their unit tests);
#                 ~19 MB download, ~96 MB installed; only its promtool is used (the service is
#                 not started in containers without systemd)
#   chromium    - the web page's tests drive Debian's headless chromium (Playwright for Python
#                 with executable_path=/usr/bin/chromium; no browser is downloaded)
#   fonts-dejavu-core - the controller renders the act of rule 18 as PDF with DejaVu Sans
#                 (Cyrillic and the Kazakh letters); needed at run time too, not only in tests
#   poppler-utils - pdftotext / pdftoppm: the act tests read the PDF's text and render page 1
# (systemd-analyze, which verifies the units in systemd/, comes with systemd itself and is not
# installed here: those tests skip where it is missing.)
# Safe to run again: it installs only what is not there. Not root and something missing: a
# warning - or, under CI (CI=true), exit 1.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root to install them)" >&2
    # On a developer's machine the tests that need them skip, each with its reason. Under CI
    # (CI=true) a run without them would pass with half the suite left out: refuse.
    case "${CI:-}" in
      1|true|TRUE|True|yes)
        echo "CI=${CI}: the suite needs every one of them; install them as root first" >&2
        exit 1 ;;
    esac
    exit 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
