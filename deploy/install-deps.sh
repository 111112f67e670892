#!/usr/bin/env bash
# Installs everything moat's build, tests and benchmarks need on a fresh Debian 12 machine.
# Idempotent and noninteractive: safe to run again; it installs only what is missing.
# Postfix is installed for its test peers (smtp-source, smtp-sink) and the side-by-side
# benchmark; with "No configuration" it never starts a daemon or touches port 25.
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config git
  liburing-dev libwolfssl-dev libxxhash-dev libabsl-dev libgtest-dev libgmock-dev
  libbenchmark-dev libc-ares-dev libsystemd-dev
  # tests and benchmarks: real peers and tools
  openssl python3 python3-aiosmtpd swaks libnet-ssleay-perl postfix tinycdb libcdb-dev
  gnuplot-nox procps iproute2
  testssl.sh  # tls: TLS scan of moat in tests/e2e/tls_test.cc
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
