#!/usr/bin/env bash
# Make sure Debian packages are installed. Each argument is PACKAGE:FILE, where FILE is a path
# (absolute) or a shared-library name that shows the package is present. Missing packages are
# installed with apt-get when running as root; otherwise the exact command is printed and the
# script fails, so `make` stops with instructions instead of a confusing import error later.
set -euo pipefail

missing=()
for spec in "$@"; do
  package=${spec%%:*}
  probe=${spec#*:}
  if [[ $probe == /* ]]; then
    [[ -e $probe ]] && continue
  else
    ldconfig -p 2>/dev/null | grep -q "$probe" && continue
  fi
  missing+=("$package")
done

[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "LaneGuard needs these system packages: ${missing[*]}" >&2
  echo "Install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "Installed: ${missing[*]}"
