#!/usr/bin/env bash
# Prepares a development checkout on Debian 12 (or Raspberry Pi OS): the system packages
# the project needs (Python's venv, Mosquitto and its clients; for the tests also openssl,
# strace, tmux, dbus-daemon, shellcheck, udev and systemd) where they are missing,
# then a virtual environment in .venv with the project installed.
# Sourced by demo.sh and test.sh; $1 is the pip extra to install ("" or "dev").
set -euo pipefail

extra="${1:-}"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
if [ "$extra" = "dev" ]; then
  # the tests make certificates with openssl, count fsyncs with strace and watch
  # hub check in a real terminal with tmux
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)
  # a private D-Bus for the Bluetooth driver's tests against real bleak without BlueZ
  command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
  # the installer's tests: shellcheck on deploy/*.sh, and udev's rule engine (udevadm
  # test) for the radios' stable names
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  command -v udevadm >/dev/null 2>&1 || missing+=(udev)
  # the units' tests: systemd-analyze verify and security, systemd-sysusers (slim images
  # have no systemd)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: please install these Debian packages first: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -q >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
spec="."
[ -n "$extra" ] && spec=".[$extra]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
