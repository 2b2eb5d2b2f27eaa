#!/usr/bin/env bash
# Installs the Leefsamen hub on Raspberry Pi OS or Debian 12, or removes it again.
#
# What it sets up (docs/install.md has the whole layout with owners and modes):
#   - the Debian packages it needs (python3-venv, mosquitto, bluez; nodejs and npm for
#     Zigbee2MQTT), unless --no-apt;
#   - the service user and its groups (systemd-sysusers) and the hub's directories with
#     their owners and modes (systemd-tmpfiles), both from files that stay installed so
#     they are applied again at every boot;
#   - a virtual environment in /opt/leefsamen-hub/venv with the project's wheel (built from
#     this checkout, or --wheel FILE) and /usr/local/bin/hub pointing into it;
#   - the units (enabled, and started unless --no-start), the udev rules that give the
#     radios stable names under /dev/leefsamen/, the hub's Mosquitto listener, and
#     /etc/leefsamen-hub/hub.toml from the example when there is none yet;
#   - with --with-zigbee2mqtt: Zigbee2MQTT from the npm registry in /opt/zigbee2mqtt and a
#     first configuration for it.
#
# Running it again changes nothing that is already right and says "unchanged" for it; a
# different wheel upgrades the environment. --uninstall removes what it installed but
# keeps the configuration, the data and the users unless --purge is given.
#
# --root DIR installs into DIR instead of the running system (for tests and staging): no
# apt, no systemctl start, nothing outside DIR. The virtual environment refers to its own
# place (DIR/opt/...), so a root made this way is for inspection, not for copying to a
# card. As a user other than root, --root sets modes but not owners.
#
# Exit status: 0 done, 1 failed (the message says what), 2 bad usage.
set -eEuo pipefail
shopt -s inherit_errexit
umask 022
# A command that fails unexpectedly says which one (the expected failures say more).
trap 'echo "install.sh: failed: $BASH_COMMAND (line $LINENO)" >&2' ERR

readonly PREFIX=/opt/leefsamen-hub
readonly VENV=$PREFIX/venv
readonly CONF_DIR=/etc/leefsamen-hub
readonly STATE_DIR=/var/lib/leefsamen-hub
readonly HUB_LINK=/usr/local/bin/hub
readonly UNIT_DIR=/etc/systemd/system
readonly SYSUSERS_DIR=/usr/lib/sysusers.d
readonly TMPFILES_DIR=/usr/lib/tmpfiles.d
readonly UDEV_RULES=/etc/udev/rules.d/99-leefsamen-hub.rules
readonly MOSQUITTO_CONF=/etc/mosquitto/conf.d/leefsamen-hub.conf
readonly HUB_UNITS=(leefsamen-hub-provision.service leefsamen-hub.service)
readonly Z2M_UNIT=zigbee2mqtt.service
readonly Z2M_DIR=/opt/zigbee2mqtt
readonly Z2M_DATA=/var/lib/zigbee2mqtt
# The newest Zigbee2MQTT that still runs on Debian 12's Node.js 18 (its engines field
# accepts ^18); later releases need Node.js 20.
readonly Z2M_VERSION=2.2.1
readonly Z2M_MARK=.installed-by-leefsamen-hub
# gpiozero 2 drives the pins through lgpio. PyPI's wheels (aarch64, armv7l) carry the C
# library inside, so the venv needs no system site packages and no compiler.
readonly LGPIO_REQ='lgpio>=0.2.2,<0.3'
readonly WHEEL_STAMP=.leefsamen-hub-wheel
readonly APT_PACKAGES=(python3-venv mosquitto bluez)
readonly Z2M_APT_PACKAGES=(nodejs npm)
# Every wheel built from a checkout gets the same timestamps, so the same sources give the
# same file and a second run sees "unchanged".
readonly BUILD_EPOCH=315532800

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
readonly HERE REPO

ROOT=""
WHEEL=""
PYTHON=/usr/bin/python3
PIP_EXTRA=()
DO_APT=1
DO_START=1
WITH_Z2M=0
DO_NPM=1
Z2M_ADAPTER=""
UNINSTALL=0
PURGE=0
AS_ROOT=1
CHANGED=0
UNCHANGED=0
TMP=""
LAST_CHANGED=0
QUIET=0
# What changed on this run, for what the running system must reload or restart.
UNITS_CHANGED=0
UDEV_CHANGED=0
MOSQUITTO_CHANGED=0
HUB_CHANGED=0

usage() {
  cat <<'EOF'
Usage: deploy/install.sh [OPTION]...
Install the Leefsamen hub on Raspberry Pi OS / Debian 12 (as root), or remove it.

  --wheel FILE         install this wheel of the project (default: build one from this
                       checkout)
  --find-links DIR     let pip look for wheels in DIR too (repeatable; for offline use)
  --no-index           let pip use only --find-links, not the package index
  --python PATH        the Python for the virtual environment (default: /usr/bin/python3)
  --no-apt             do not install Debian packages
  --no-start           enable the units but do not start or restart anything
  --with-zigbee2mqtt   also install Zigbee2MQTT (from the npm registry) and its first
                       configuration
  --no-npm             with --with-zigbee2mqtt: only its configuration, not the program
  --zigbee-adapter T   Zigbee2MQTT's adapter type (zstack, ember, deconz, zigate, zboss)
                       when the coordinator is not plugged in or not recognised
  --root DIR           install into DIR instead of this system (tests, staging): no apt,
                       nothing started; works as any user (owners only as root)
  --uninstall          remove the hub; keeps /etc/leefsamen-hub, /var/lib/leefsamen-hub,
                       /var/lib/zigbee2mqtt and the users
  --purge              with --uninstall: remove those too (the hub's identity and data)
  -h, --help           show this help

Running it again is safe: what is already right is left alone ("unchanged").
Exit status: 0 done, 1 failed, 2 bad usage. More: docs/install.md.
EOF
}

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

bad_usage() {
  echo "install.sh: $*" >&2
  echo "Try 'deploy/install.sh --help'." >&2
  exit 2
}

# One line per step: what, then what happened to it. Counts changes for the summary.
# QUIET=1: a part of a step that reports itself as a whole.
report() {
  local what=$1 outcome=$2
  [[ $QUIET -eq 0 ]] || return 0
  printf '  %-52s %s\n' "$what" "$outcome"
  if [[ $outcome == unchanged* ]]; then
    UNCHANGED=$((UNCHANGED + 1))
  else
    CHANGED=$((CHANGED + 1))
  fi
}

note() {
  printf '  %s\n' "$*"
}

# ---- options ------------------------------------------------------------------------------
need_value() {
  [[ $# -ge 2 && -n $2 ]] || bad_usage "option $1 needs a value"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    local opt=$1 value=""
    if [[ $opt == --*=* ]]; then
      value=${opt#*=}
      opt=${opt%%=*}
      set -- "$opt" "$value" "${@:2}"
    fi
    case $opt in
      -h | --help)
        usage
        exit 0
        ;;
      --root)
        need_value "$@"
        ROOT=$2
        shift 2
        ;;
      --wheel)
        need_value "$@"
        WHEEL=$2
        shift 2
        ;;
      --find-links)
        need_value "$@"
        [[ -d $2 ]] || bad_usage "--find-links $2: no such directory"
        PIP_EXTRA+=(--find-links "$(cd "$2" && pwd)")
        shift 2
        ;;
      --no-index)
        PIP_EXTRA+=(--no-index)
        shift
        ;;
      --python)
        need_value "$@"
        PYTHON=$2
        shift 2
        ;;
      --no-apt)
        DO_APT=0
        shift
        ;;
      --no-start)
        DO_START=0
        shift
        ;;
      --with-zigbee2mqtt)
        WITH_Z2M=1
        shift
        ;;
      --no-npm)
        DO_NPM=0
        shift
        ;;
      --zigbee-adapter)
        need_value "$@"
        Z2M_ADAPTER=$2
        shift 2
        ;;
      --uninstall)
        UNINSTALL=1
        shift
        ;;
      --purge)
        PURGE=1
        shift
        ;;
      *)
        bad_usage "unknown option '$1'"
        ;;
    esac
  done
}

check_args() {
  if [[ $PURGE -eq 1 && $UNINSTALL -eq 0 ]]; then
    bad_usage "--purge only goes with --uninstall"
  fi
  if [[ $UNINSTALL -eq 1 ]]; then
    if [[ -n $WHEEL || $WITH_Z2M -eq 1 || -n $Z2M_ADAPTER ]]; then
      bad_usage "--uninstall goes only with --root and --purge" \
        "(it removes Zigbee2MQTT too when it installed it)"
    fi
  fi
  if [[ $DO_NPM -eq 0 && $WITH_Z2M -eq 0 ]]; then
    bad_usage "--no-npm only goes with --with-zigbee2mqtt"
  fi
  if [[ -n $Z2M_ADAPTER ]]; then
    [[ $WITH_Z2M -eq 1 ]] || bad_usage "--zigbee-adapter only goes with --with-zigbee2mqtt"
    case $Z2M_ADAPTER in
      zstack | ember | deconz | zigate | zboss) ;;
      *)
        bad_usage "--zigbee-adapter '$Z2M_ADAPTER':" \
          "expected zstack, ember, deconz, zigate or zboss"
        ;;
    esac
  fi
  if [[ -n $WHEEL ]]; then
    [[ -f $WHEEL ]] || bad_usage "--wheel $WHEEL: no such file"
    [[ $(basename "$WHEEL") == leefsamen_hub-*.whl ]] ||
      bad_usage "--wheel $WHEEL: not a wheel of this project (leefsamen_hub-*.whl)"
    WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
  fi
  if [[ -n $ROOT ]]; then
    [[ -d $ROOT ]] || bad_usage "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd -P)
    [[ $ROOT != / ]] || bad_usage "--root /: leave --root out to install on this system"
    DO_APT=0
    DO_START=0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    [[ -n $ROOT ]] || fail "must run as root (try: sudo deploy/install.sh), or use --root DIR"
    AS_ROOT=0
  fi
}

# ---- helpers ------------------------------------------------------------------------------
# The numeric id of a user or group in the target's own database (DIR/etc/passwd when
# --root is used: the names must not be looked up on the machine that runs the script).
id_of() {
  local db=$1 name=$2 id
  if [[ $name == root ]]; then
    echo 0
    return
  fi
  id=$(awk -F: -v n="$name" '$1 == n { print $3; exit }' "$ROOT/etc/$db" 2>/dev/null || true)
  [[ -n $id ]] || fail "no $db entry '$name' in $ROOT/etc/$db"
  echo "$id"
}

# Sets mode and (as root) owner of PATH; prints "mode" or "owner" when it had to fix one.
fix_meta() {
  local path=$1 mode=$2 owner=$3 group=$4 fixed=""
  local have_mode have_uid have_gid uid gid
  read -r have_mode have_uid have_gid < <(stat -c '%a %u %g' "$path")
  if [[ $((8#$have_mode)) -ne $((8#$mode)) ]]; then
    chmod "$mode" "$path"
    fixed="mode"
  fi
  if [[ $AS_ROOT -eq 1 ]]; then
    uid=$(id_of passwd "$owner")
    gid=$(id_of group "$group")
    if [[ $have_uid != "$uid" || $have_gid != "$gid" ]]; then
      chown "$uid:$gid" "$path"
      fixed="${fixed:+$fixed, }owner"
    fi
  fi
  echo "$fixed"
}

# Installs SRC as DEST (a path in the target) with MODE, OWNER, GROUP, replacing it at once
# (a temporary file renamed over it) only when its contents differ. Sets LAST_CHANGED.
put_file() {
  local src=$1 dest=$2 mode=$3 owner=${4:-root} group=${5:-root}
  local path=$ROOT$dest outcome fixed
  if [[ -f $path && ! -L $path ]] && cmp -s "$src" "$path"; then
    outcome=unchanged
  else
    [[ -e $path || -L $path ]] && outcome=updated || outcome=installed
    mkdir -p "$(dirname "$path")"
    install -m "$mode" "$src" "$path.new.$$"
    mv -f "$path.new.$$" "$path"
  fi
  fixed=$(fix_meta "$path" "$mode" "$owner" "$group")
  if [[ $outcome == unchanged && -n $fixed ]]; then
    outcome="fixed $fixed"
  fi
  report "$dest" "$outcome"
  if [[ $outcome == unchanged ]]; then LAST_CHANGED=0; else LAST_CHANGED=1; fi
}

# Removes PATH of the target if it is there; says so.
remove_path() {
  local dest=$1 why=${2:-}
  if [[ -e $ROOT$dest || -L $ROOT$dest ]]; then
    rm -rf -- "$ROOT$dest"
    report "$dest" "removed${why:+ ($why)}"
  fi
}

systemctl_target() {
  if [[ -n $ROOT ]]; then
    systemctl --root="$ROOT" "$@"
  else
    systemctl "$@"
  fi
}

require_file() {
  [[ -f $1 ]] || fail "$1 is missing from this checkout"
}

# ---- install steps ------------------------------------------------------------------------
install_apt() {
  local packages=("${APT_PACKAGES[@]}") missing=() pkg status
  [[ $WITH_Z2M -eq 1 && $DO_NPM -eq 1 ]] && packages+=("${Z2M_APT_PACKAGES[@]}")
  for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    report "Debian packages (${packages[*]})" unchanged
    return
  fi
  note "installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
  report "Debian packages (${packages[*]})" "installed ${missing[*]}"
}

# A checksum of the target's user and group database (empty before the first run).
user_db_sum() {
  cat "$ROOT/etc/passwd" "$ROOT/etc/group" 2>/dev/null | sha256sum || true
}

# The user and groups: the sysusers.d files are installed (so systemd-sysusers applies them
# again at every boot) and applied now. Input on stdin: the one argument form that reads
# the same with and without --root across systemd versions.
install_users() {
  local names=(leefsamen-hub) name before after
  [[ $WITH_Z2M -eq 1 ]] && names+=(zigbee2mqtt)
  for name in "${names[@]}"; do
    require_file "$HERE/sysusers.d/$name.conf"
    put_file "$HERE/sysusers.d/$name.conf" "$SYSUSERS_DIR/$name.conf" 0644
  done
  mkdir -p "$ROOT/etc"
  before=$(user_db_sum)
  local out root_opt=()
  [[ -z $ROOT ]] || root_opt=(--root="$ROOT")
  for name in "${names[@]}"; do
    out=$(systemd-sysusers "${root_opt[@]}" - <"$ROOT$SYSUSERS_DIR/$name.conf" 2>&1) ||
      fail "systemd-sysusers could not apply $name.conf: $out"
  done
  after=$(user_db_sum)
  if [[ $before == "$after" ]]; then
    report "users ${names[*]}" unchanged
  else
    report "users ${names[*]}" "created or updated"
  fi
}

# The hub's directories, their owners and modes, from the tmpfiles.d file (installed so
# that every boot puts them right again). Without root the owners are left out.
install_dirs() {
  local conf=$HERE/tmpfiles.d/leefsamen-hub.conf before after input
  require_file "$conf"
  put_file "$conf" "$TMPFILES_DIR/leefsamen-hub.conf" 0644
  before=$(stat -c '%n %a %u %g' "$ROOT$CONF_DIR" "$ROOT$STATE_DIR" 2>/dev/null || true)
  if [[ $AS_ROOT -eq 1 ]]; then
    input=$(cat "$conf")
  else
    input=$(awk '/^[a-zA-Z]/ { $4 = "-"; $5 = "-" } { print }' "$conf")
  fi
  if [[ -n $ROOT ]]; then
    systemd-tmpfiles --root="$ROOT" --create - <<<"$input"
  else
    systemd-tmpfiles --create - <<<"$input"
  fi
  after=$(stat -c '%n %a %u %g' "$ROOT$CONF_DIR" "$ROOT$STATE_DIR")
  if [[ $before == "$after" ]]; then
    report "$CONF_DIR, $STATE_DIR" unchanged
  else
    report "$CONF_DIR, $STATE_DIR" "created or fixed"
  fi
}

# A copy of the checkout's sources (what git tracks or would track; without git, the tree
# less the usual build and cache folders), so the build neither writes into the checkout
# nor picks up anything stale from an earlier build there.
copy_sources() {
  local dest=$1
  local git=(git -c safe.directory="$REPO" -C "$REPO")
  mkdir -p "$dest"
  if command -v git >/dev/null && "${git[@]}" rev-parse --git-dir >/dev/null 2>&1; then
    "${git[@]}" ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do
        # a file deleted but not yet committed is listed too
        if [[ -e $REPO/$f ]]; then printf '%s\0' "$f"; fi
      done | tar -C "$REPO" --null -T - -cf - | tar -C "$dest" -xf -
  else
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
      --exclude='*.egg-info' --exclude=__pycache__ --exclude='.*_cache' \
      --exclude=./bench/.cache -cf - . | tar -C "$dest" -xf -
  fi
}

# Builds the project's wheel from this checkout with the venv's own pip; prints its path.
build_wheel() {
  local py=$1
  require_file "$REPO/pyproject.toml"
  copy_sources "$TMP/src"
  SOURCE_DATE_EPOCH=$BUILD_EPOCH "$py" -m pip wheel --disable-pip-version-check --no-input \
    --quiet --no-deps "${PIP_EXTRA[@]}" -w "$TMP/wheel" "$TMP/src" >&2 ||
    fail "could not build the wheel from $REPO (pip wheel failed; see above)"
  local built=("$TMP"/wheel/leefsamen_hub-*.whl)
  [[ -f ${built[0]} ]] || fail "pip wheel made no leefsamen_hub wheel"
  echo "${built[0]}"
}

# True on the boards whose GPIO the gpio driver uses through lgpio.
wants_lgpio() {
  case $(uname -m) in
    aarch64 | armv7l) [[ -z $ROOT ]] ;;
    *) return 1 ;;
  esac
}

install_venv() {
  local venv=$ROOT$VENV py wheel sum stamp outcome
  py=$venv/bin/python
  mkdir -p "$ROOT$PREFIX"
  fix_meta "$ROOT$PREFIX" 0755 root root >/dev/null
  # A venv whose Python no longer runs (the system's Python was replaced) is made anew.
  if [[ -e $venv ]] && ! "$py" -B -c '' 2>/dev/null; then
    note "the virtual environment's Python no longer runs: making it anew"
    rm -rf -- "$venv"
  fi
  if [[ ! -e $venv ]]; then
    [[ -x $PYTHON ]] || fail "$PYTHON not found (install python3, or give --python)"
    "$PYTHON" -m venv "$venv" ||
      fail "could not make a virtual environment with $PYTHON (is python3-venv installed?)"
  fi
  if [[ -n $WHEEL ]]; then
    wheel=$WHEEL
  else
    wheel=$(build_wheel "$py")
  fi
  sum=$(sha256sum "$wheel" | cut -d' ' -f1)
  stamp=$venv/$WHEEL_STAMP
  if [[ -f $stamp && $(cut -d' ' -f1 "$stamp") == "$sum" ]] &&
    PYTHONDONTWRITEBYTECODE=1 "$venv/bin/hub" --version >/dev/null 2>&1; then
    report "$VENV" "unchanged ($(basename "$wheel"))"
    return
  fi
  [[ -f $stamp ]] && outcome="upgraded to" || outcome="installed"
  local pip=("$py" -m pip install --disable-pip-version-check --no-input --quiet
    "${PIP_EXTRA[@]}")
  # The project itself even when its version number did not change (a rebuilt wheel), then
  # whatever it needs that is missing or too old.
  "${pip[@]}" --force-reinstall --no-deps "$wheel" ||
    fail "pip could not install $wheel"
  local extra=()
  wants_lgpio && extra+=("$LGPIO_REQ")
  "${pip[@]}" "$wheel" "${extra[@]}" ||
    fail "pip could not install the dependencies of $(basename "$wheel")"
  PYTHONDONTWRITEBYTECODE=1 "$venv/bin/hub" --version >/dev/null ||
    fail "the installed hub does not run ($venv/bin/hub --version failed)"
  printf '%s  %s\n' "$sum" "$(basename "$wheel")" >"$stamp"
  HUB_CHANGED=1
  report "$VENV" "$outcome $(basename "$wheel")"
}

install_link() {
  local path=$ROOT$HUB_LINK target=$VENV/bin/hub
  mkdir -p "$(dirname "$path")"
  if [[ -L $path && $(readlink "$path") == "$target" ]]; then
    report "$HUB_LINK" unchanged
  elif [[ -e $path && ! -L $path ]]; then
    note "warning: $HUB_LINK is a file that is not ours; left alone (run $target instead)"
  else
    ln -sfn "$target" "$path"
    report "$HUB_LINK" "-> $target"
  fi
}

# The documentation the units point at (Documentation=file:///opt/leefsamen-hub/docs/...).
install_docs() {
  local doc changed=0 total=0
  [[ -d $REPO/docs ]] || return 0
  for doc in "$REPO"/docs/*.md; do
    [[ -f $doc ]] || continue
    QUIET=1 put_file "$doc" "$PREFIX/docs/$(basename "$doc")" 0644
    total=$((total + 1))
    changed=$((changed + LAST_CHANGED))
  done
  if [[ $changed -eq 0 ]]; then
    report "$PREFIX/docs ($total files)" unchanged
  else
    report "$PREFIX/docs ($total files)" "$changed installed or updated"
  fi
}

install_config() {
  local dest=$CONF_DIR/hub.toml
  require_file "$HERE/hub.example.toml"
  if [[ -e $ROOT$dest ]]; then
    local fixed
    fixed=$(fix_meta "$ROOT$dest" 0640 root leefsamen-hub)
    report "$dest" "unchanged (kept as it is${fixed:+; fixed $fixed})"
    return
  fi
  put_file "$HERE/hub.example.toml" "$dest" 0640 root leefsamen-hub
  HUB_CHANGED=1
}

install_mosquitto() {
  require_file "$HERE/mosquitto/leefsamen-hub.conf"
  put_file "$HERE/mosquitto/leefsamen-hub.conf" "$MOSQUITTO_CONF" 0644
  MOSQUITTO_CHANGED=$LAST_CHANGED
}

install_udev() {
  require_file "$HERE/udev/99-leefsamen-hub.rules"
  put_file "$HERE/udev/99-leefsamen-hub.rules" "$UDEV_RULES" 0644
  UDEV_CHANGED=$LAST_CHANGED
}

enable_unit() {
  local unit=$1 state
  state=$(systemctl_target is-enabled "$unit" 2>/dev/null || true)
  if [[ $state == enabled || $state == static ]]; then
    report "$unit" "unchanged ($state)"
  else
    systemctl_target enable --quiet "$unit" || fail "systemctl could not enable $unit"
    report "$unit" enabled
  fi
}

install_units() {
  local units=("${HUB_UNITS[@]}") unit
  [[ $WITH_Z2M -eq 1 ]] && units+=("$Z2M_UNIT")
  for unit in "${units[@]}"; do
    require_file "$REPO/systemd/$unit"
    put_file "$REPO/systemd/$unit" "$UNIT_DIR/$unit" 0644
    if [[ $LAST_CHANGED -eq 1 ]]; then
      UNITS_CHANGED=1
      HUB_CHANGED=1
    fi
  done
  if [[ -z $ROOT && $UNITS_CHANGED -eq 1 ]]; then
    systemctl daemon-reload
  fi
  for unit in "${units[@]}"; do
    enable_unit "$unit"
  done
}

# Zigbee2MQTT's first configuration, written only when there is none (Zigbee2MQTT writes
# its generated network key back into it, so it belongs to the zigbee2mqtt user, 0600).
zigbee2mqtt_config() {
  local adapter=$Z2M_ADAPTER rtscts="" baud="" props
  if [[ -z $adapter && -z $ROOT ]] && command -v udevadm >/dev/null &&
    props=$(udevadm info --query=property --name=/dev/leefsamen/zigbee 2>/dev/null); then
    adapter=$(sed -n 's/^LEEFSAMEN_ZIGBEE_ADAPTER=//p' <<<"$props")
    rtscts=$(sed -n 's/^LEEFSAMEN_ZIGBEE_RTSCTS=//p' <<<"$props")
    baud=$(sed -n 's/^LEEFSAMEN_ZIGBEE_BAUDRATE=//p' <<<"$props")
  fi
  cat <<EOF
# Zigbee2MQTT for the Leefsamen hub. Written once by deploy/install.sh; from then on it
# is Zigbee2MQTT's own file (it writes the generated network key into it).
version: 4
mqtt:
  base_topic: zigbee2mqtt
  # The hub's own Mosquitto listens on 127.0.0.1 only: an address, not "localhost", which
  # Node.js may try as ::1 first.
  server: mqtt://127.0.0.1
serial:
  # The coordinator's stable name (/etc/udev/rules.d/99-leefsamen-hub.rules).
  port: /dev/leefsamen/zigbee
EOF
  if [[ -n $adapter ]]; then
    echo "  adapter: $adapter"
  else
    echo "  # adapter: zstack | ember | deconz | zigate | zboss (set it: Zigbee2MQTT cannot"
    echo "  # recognise the adapter behind a symlink)"
  fi
  [[ $rtscts == 1 ]] && echo "  rtscts: true"
  [[ -n $baud ]] && echo "  baudrate: $baud"
  cat <<'EOF'
# Nothing listens but the broker: no web frontend.
frontend:
  enabled: false
homeassistant:
  enabled: false
# Joining is closed at every start (since Zigbee2MQTT 2.0 there is no permit_join
# setting); pairing opens it for a while (zigbee2mqtt/bridge/request/permit_join).
advanced:
  network_key: GENERATE
  pan_id: GENERATE
  ext_pan_id: GENERATE
  # To the journal, not to files on the SD card.
  log_output:
    - console
EOF
}

install_zigbee2mqtt_program() {
  local dir=$ROOT$Z2M_DIR have=""
  [[ -f $dir/$Z2M_MARK ]] && have=$(cat "$dir/$Z2M_MARK")
  if [[ $have == "$Z2M_VERSION" ]]; then
    report "$Z2M_DIR" "unchanged (zigbee2mqtt $Z2M_VERSION)"
    return
  fi
  if [[ -e $dir && ! -f $dir/$Z2M_MARK ]]; then
    fail "$Z2M_DIR exists and was not installed by this script;" \
      "move it away or leave out --with-zigbee2mqtt"
  fi
  command -v npm >/dev/null || fail "npm is not installed (apt-get install nodejs npm)"
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [[ $major -ge 18 ]] ||
    fail "Zigbee2MQTT $Z2M_VERSION needs Node.js 18 or later, this is $(node --version)"
  note "fetching zigbee2mqtt $Z2M_VERSION from the npm registry (a few minutes on a Pi)"
  mkdir -p "$TMP/z2m" "$dir.new"
  (cd "$TMP/z2m" && npm pack --silent "zigbee2mqtt@$Z2M_VERSION" >/dev/null) ||
    fail "npm could not fetch zigbee2mqtt@$Z2M_VERSION"
  tar -xzf "$TMP"/z2m/zigbee2mqtt-*.tgz --strip-components=1 -C "$dir.new"
  (cd "$dir.new" && npm install --omit=dev --no-audit --no-fund --loglevel=error >/dev/null) ||
    fail "npm could not install the dependencies of zigbee2mqtt $Z2M_VERSION"
  echo "$Z2M_VERSION" >"$dir.new/$Z2M_MARK"
  rm -rf -- "$dir.old"
  [[ -e $dir ]] && mv "$dir" "$dir.old"
  mv "$dir.new" "$dir"
  rm -rf -- "$dir.old"
  report "$Z2M_DIR" "${have:+upgraded to }zigbee2mqtt $Z2M_VERSION"
  UNITS_CHANGED=1
}

install_zigbee2mqtt() {
  if [[ $DO_NPM -eq 1 ]]; then
    install_zigbee2mqtt_program
  else
    note "Zigbee2MQTT itself not installed (--no-npm)"
  fi
  local data=$ROOT$Z2M_DATA conf=$Z2M_DATA/configuration.yaml
  mkdir -p "$data"
  local fixed
  fixed=$(fix_meta "$data" 0750 zigbee2mqtt zigbee2mqtt)
  [[ -z $fixed ]] || report "$Z2M_DATA" "fixed $fixed"
  if [[ -e $ROOT$conf ]]; then
    report "$conf" "unchanged (kept as it is)"
    return
  fi
  zigbee2mqtt_config >"$TMP/configuration.yaml"
  put_file "$TMP/configuration.yaml" "$conf" 0600 zigbee2mqtt zigbee2mqtt
  if ! grep -q '^  adapter:' "$TMP/configuration.yaml"; then
    note "set serial.adapter in $conf: no known Zigbee coordinator is plugged in"
    note "(or run again with --zigbee-adapter TYPE after removing that file)"
  fi
}

# On the running system: make what changed take effect.
activate() {
  if [[ $UDEV_CHANGED -eq 1 ]]; then
    udevadm control --reload
    udevadm trigger --subsystem-match=tty --subsystem-match=gpio
    note "udev rules reloaded; /dev/leefsamen/ names made for what is plugged in"
  fi
  if [[ $DO_START -eq 0 ]]; then
    note "nothing started or restarted (--no-start)"
    return
  fi
  if [[ $MOSQUITTO_CHANGED -eq 1 ]]; then
    systemctl try-restart mosquitto.service ||
      fail "mosquitto did not restart with $MOSQUITTO_CONF (see: journalctl -u mosquitto)"
    note "mosquitto restarted if it was running (its configuration changed)"
  fi
  # Queued, not waited for: an unprovisioned hub cannot start yet, and says why in the
  # journal; `hub doctor` tells the state.
  local units=("${HUB_UNITS[@]}")
  [[ $WITH_Z2M -eq 1 && $DO_NPM -eq 1 ]] && units=("$Z2M_UNIT" "${units[@]}")
  if [[ $HUB_CHANGED -eq 1 ]]; then
    systemctl try-restart --no-block leefsamen-hub.service
  fi
  systemctl start --no-block "${units[@]}"
  note "started: ${units[*]} (see 'systemctl status leefsamen-hub')"
}

do_install() {
  echo "Installing the Leefsamen hub${ROOT:+ into $ROOT}"
  [[ $DO_APT -eq 1 ]] && install_apt
  install_users
  install_dirs
  install_venv
  install_link
  install_docs
  install_config
  install_mosquitto
  install_udev
  install_units
  [[ $WITH_Z2M -eq 1 ]] && install_zigbee2mqtt
  [[ -z $ROOT ]] && activate
  echo "Done: $CHANGED changed, $UNCHANGED unchanged."
  if [[ -z $ROOT ]]; then
    echo "Next: put leefsamen.toml on the boot partition and reboot, or run 'hub provision'"
    echo "(docs/provision.md); 'hub doctor' checks the result."
  fi
}

# ---- uninstall ----------------------------------------------------------------------------
remove_unit() {
  local unit=$1
  [[ -e $ROOT$UNIT_DIR/$unit ]] || return 0
  if [[ -z $ROOT ]]; then
    systemctl disable --now --quiet "$unit" 2>/dev/null || true
  else
    systemctl --root="$ROOT" disable --quiet "$unit" 2>/dev/null || true
  fi
  remove_path "$UNIT_DIR/$unit" "stopped and disabled"
}

# Removes a user and its group with shadow's own tools (--prefix: in the target's files).
# Without root, the target's shadow files are the caller's but mode 0000 as systemd-sysusers
# makes them: readable for the moment of the change, then put back.
remove_user() {
  local name=$1 args=() f
  [[ -n $ROOT ]] && args=(--prefix "$ROOT")
  if [[ $AS_ROOT -eq 0 ]]; then
    for f in shadow gshadow; do
      if [[ -e $ROOT/etc/$f ]]; then chmod u+rw "$ROOT/etc/$f"; fi
    done
  fi
  if grep -q "^$name:" "$ROOT/etc/passwd" 2>/dev/null; then
    userdel "${args[@]}" "$name" || fail "userdel $name failed"
    report "user $name" removed
  fi
  if grep -q "^$name:" "$ROOT/etc/group" 2>/dev/null; then
    groupdel "${args[@]}" "$name" || fail "groupdel $name failed"
    report "group $name" removed
  fi
  if [[ $AS_ROOT -eq 0 ]]; then
    for f in shadow gshadow; do
      if [[ -e $ROOT/etc/$f ]]; then chmod 0000 "$ROOT/etc/$f"; fi
    done
  fi
}

do_uninstall() {
  echo "Removing the Leefsamen hub${ROOT:+ from $ROOT}"
  local unit
  for unit in leefsamen-hub.service leefsamen-hub-provision.service "$Z2M_UNIT"; do
    remove_unit "$unit"
  done
  [[ -z $ROOT ]] && systemctl daemon-reload
  if [[ -e $ROOT$UDEV_RULES ]]; then
    remove_path "$UDEV_RULES"
    [[ -n $ROOT ]] || udevadm control --reload
  fi
  if [[ -e $ROOT$MOSQUITTO_CONF ]]; then
    remove_path "$MOSQUITTO_CONF"
    [[ -z $ROOT ]] && { systemctl try-restart mosquitto.service || true; }
  fi
  if [[ -L $ROOT$HUB_LINK && $(readlink "$ROOT$HUB_LINK") == "$VENV/bin/hub" ]]; then
    remove_path "$HUB_LINK"
  fi
  remove_path "$PREFIX" "the program; the data are elsewhere"
  if [[ -f $ROOT$Z2M_DIR/$Z2M_MARK ]]; then
    remove_path "$Z2M_DIR" "the program; its data are in $Z2M_DATA"
  fi
  remove_path "$SYSUSERS_DIR/leefsamen-hub.conf"
  remove_path "$SYSUSERS_DIR/zigbee2mqtt.conf"
  remove_path "$TMPFILES_DIR/leefsamen-hub.conf"

  if [[ $PURGE -eq 1 ]]; then
    remove_path "$CONF_DIR" "the configuration and the hub's certificate and key"
    remove_path "$STATE_DIR" "the outbox, the event store, the learned routine"
    remove_path "$Z2M_DATA" "the Zigbee network and its paired sensors"
    remove_user leefsamen-hub
    remove_user zigbee2mqtt
  else
    echo "Kept (remove them with --uninstall --purge):"
    local path
    for path in "$CONF_DIR" "$STATE_DIR" "$Z2M_DATA"; do
      [[ -e $ROOT$path ]] || continue
      case $path in
        "$CONF_DIR") note "$path: the configuration and the hub's identity (certificate, key)" ;;
        "$STATE_DIR") note "$path: unsent alerts, the event store, the learned routine" ;;
        "$Z2M_DATA") note "$path: the Zigbee network key and the paired sensors" ;;
      esac
    done
    local name
    for name in leefsamen-hub zigbee2mqtt; do
      if grep -q "^$name:" "$ROOT/etc/passwd" 2>/dev/null; then
        note "user $name: it owns those files"
      fi
    done
  fi
  if [[ -z $ROOT ]]; then
    echo "Debian packages (${APT_PACKAGES[*]}, and nodejs, npm if installed) are left: other"
    echo "software may use them."
  fi
  echo "Done: $CHANGED removed."
}

main() {
  parse_args "$@"
  check_args
  if [[ $AS_ROOT -eq 0 ]]; then
    echo "Not running as root: modes are set, owners are left to you (files stay yours)."
  fi
  TMP=$(mktemp -d)
  trap 'rm -rf -- "$TMP"' EXIT
  if [[ $UNINSTALL -eq 1 ]]; then
    do_uninstall
  else
    do_install
  fi
}

main "$@"
