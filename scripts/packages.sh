# Sourced by setup.sh and setup-tests.sh: install a package list with apt, starting no service.
#
# install_packages LIST: installs what of LIST (one package a line, # comments) is missing.
# Debian's maintainer scripts start a package's services on install (docker, dnsmasq,
# prometheus); a policy-rc.d that answers 101 ("action forbidden") stops that for the length of
# the install. NEWLY_INSTALLED holds the packages this call installed.

install_packages() {
  local wanted missing=() p
  wanted=$(grep -v '^#' "$1" | tr '\n' ' ')
  NEWLY_INSTALLED=()
  for p in $wanted; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local policy=/usr/sbin/policy-rc.d made_policy= rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } || rc=$?
  [ -z "$made_policy" ] || rm -f "$policy"
  [ $rc -eq 0 ] || return $rc
  NEWLY_INSTALLED=("${missing[@]}")
}
