#!/usr/bin/env bash
# Ensure a headless-capable Chromium is installed: the status page's end-to-end test loads
# the page in it. Idempotent: when one is on PATH (Debian's `chromium`, or the Google Chrome
# CI runners ship; the names tests/e2e/status_page.rs looks for), it only says so; else it
# installs Debian's `chromium`.
#
#   scripts/chromium.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for name in chromium google-chrome google-chrome-stable chromium-browser; do
    if bin="$(command -v "$name")"; then
        log "chromium installed: $bin"
        exit 0
    fi
done
command -v apt-get >/dev/null || die "chromium is not installed and there is no apt-get: install chromium"
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null || die "installing chromium needs root (or sudo)"
    sudo=(sudo)
fi
log "installing chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null || die "apt-get installed chromium, but it is not on PATH"
log "chromium installed: $(command -v chromium)"
