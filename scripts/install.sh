#!/usr/bin/env bash
# Install nvr as a systemd service on a Raspberry Pi (or any Debian-like host), idempotently.
#
#   sudo scripts/install.sh              install or upgrade from this checkout
#   sudo scripts/install.sh --uninstall  stop and remove the service and the code; keep config and state
#   sudo scripts/install.sh --uninstall --purge   also remove /etc/nvr, /var/lib/nvr and the user
#
# Layout: code and venv in /opt/nvr (venv with --system-site-packages, so the OS package hailo-all's
# `hailo_platform` is importable), config in /etc/nvr/nvr.yml (never overwritten once there), secrets in
# /etc/nvr/credentials/ (read through systemd credentials), state in /var/lib/nvr, user and group `nvr`,
# models in /var/lib/nvr/models (the service's model store: $STATE_DIRECTORY/models).
# PREFIX, CONFIG_DIR, STATE_DIR and UNIT_DIR may be overridden from the environment (tests use a scratch root).
set -euo pipefail

PREFIX=${PREFIX:-/opt/nvr}
CONFIG_DIR=${CONFIG_DIR:-/etc/nvr}
STATE_DIR=${STATE_DIR:-/var/lib/nvr}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
SERVICE_USER=${SERVICE_USER:-nvr}
PYTHON=${PYTHON:-/usr/bin/python3}
SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)

uninstall=0
purge=0
for arg in "$@"; do
    case "$arg" in
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
# systemctl only for a real install (a scratch UNIT_DIR, as the tests use, is not one).
have_systemd() {
    [ "$UNIT_DIR" = /etc/systemd/system ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null
}

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo $0 $*)" >&2
    exit 1
fi

if [ "$uninstall" -eq 1 ]; then
    if have_systemd; then
        systemctl disable --now nvr.service 2>/dev/null || true
    fi
    rm -f "$UNIT_DIR/nvr.service"
    if have_systemd; then systemctl daemon-reload; fi
    rm -rf "$PREFIX"
    if [ "$purge" -eq 1 ]; then
        rm -rf "$CONFIG_DIR" "$STATE_DIR"
        # Only a system account of ours: never root or a login user named by mistake.
        if id "$SERVICE_USER" >/dev/null 2>&1 && [ "$(id -u "$SERVICE_USER")" -ne 0 ] \
            && getent passwd "$SERVICE_USER" | grep -q ':/usr/sbin/nologin$'; then
            userdel "$SERVICE_USER" 2>/dev/null || true
        fi
        say "removed nvr, its configuration, state and user"
    else
        say "removed nvr; kept $CONFIG_DIR and $STATE_DIR (add --purge to remove them)"
    fi
    exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install.sh: $PYTHON is older than 3.11" >&2; exit 1; }

# The service user: no login, no home. /dev/hailo0 access comes from hailo-all's udev rule; the unit's
# DeviceAllow= lets no other device through.
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin "$SERVICE_USER"
    say "created system user $SERVICE_USER"
fi

# Code: a fresh venv each time keeps upgrades clean; pip's cache makes it quick.
install -d -m 0755 "$PREFIX"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$PREFIX/venv"
fi
"$PREFIX/venv/bin/python" -m pip install --quiet --upgrade "$SOURCE_DIR"
install -m 0644 "$SOURCE_DIR/README.md" "$PREFIX/README.md" 2>/dev/null || true

# Configuration: installed once, never overwritten (the user edits it).
install -d -m 0750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"
install -d -m 0700 -o root -g root "$CONFIG_DIR/credentials"
if [ ! -e "$CONFIG_DIR/nvr.yml" ]; then
    install -m 0640 -o root -g "$SERVICE_USER" "$SOURCE_DIR/config/nvr.example.yml" "$CONFIG_DIR/nvr.yml"
    say "installed $CONFIG_DIR/nvr.yml: edit your cameras, then: systemctl restart nvr"
else
    say "kept existing $CONFIG_DIR/nvr.yml"
fi
install -m 0644 "$SOURCE_DIR/config/nvr.example.yml" "$CONFIG_DIR/nvr.example.yml"

# State (the MQTT outbox, event files); systemd's StateDirectory= would create it too. The model store
# inside it is filled by: sudo -u nvr NVR_MODELS=/var/lib/nvr/models /opt/nvr/venv/bin/nvr models pull NAME
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR/models"

install -d -m 0755 "$UNIT_DIR"
sed "s#/opt/nvr#$PREFIX#g; s#/etc/nvr#$CONFIG_DIR#g" "$SOURCE_DIR/systemd/nvr.service" > "$UNIT_DIR/nvr.service.new"
mv "$UNIT_DIR/nvr.service.new" "$UNIT_DIR/nvr.service"
chmod 0644 "$UNIT_DIR/nvr.service"

# Checked as the service sees it: its user, its state directory and model store (a model not pulled yet is
# reported with the `nvr models pull` that fetches it there), and its credentials, copied the way the unit's
# LoadCredential=secret:$CONFIG_DIR/credentials presents them (secret_<file name>).
credentials=$(mktemp -d)
for secret in "$CONFIG_DIR"/credentials/*; do
    [ -f "$secret" ] && install -m 0400 -o "$SERVICE_USER" "$secret" "$credentials/secret_$(basename "$secret")"
done
chown "$SERVICE_USER" "$credentials"
if ! runuser -u "$SERVICE_USER" -- env STATE_DIRECTORY="$STATE_DIR" NVR_MODELS="$STATE_DIR/models" \
        CREDENTIALS_DIRECTORY="$credentials" \
        "$PREFIX/venv/bin/nvr" check-config "$CONFIG_DIR/nvr.yml"; then
    say "the configuration is not ready (above); fix it, then: systemctl restart nvr"
    say "(a secret NAME goes in $CONFIG_DIR/credentials/NAME; the service reads it as secret_NAME)"
fi
rm -rf "$credentials"

if have_systemd; then
    systemctl daemon-reload
    systemctl enable nvr.service
    systemctl try-restart nvr.service || true
    say "enabled nvr.service: systemctl start nvr; journalctl -u nvr -f"
else
    say "systemd is not running here: unit installed but not enabled"
fi
