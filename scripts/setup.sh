#!/usr/bin/env bash
# Set up nvr in ./.venv on Debian / Raspberry Pi OS. Idempotent: run it again after a `git pull`.
#   scripts/setup.sh                runtime only
#   scripts/setup.sh --dev          plus what the tests need: mosquitto, GStreamer's RTSP server, ffmpeg, the dev
#                                   tools, and PyTorch (CPU build, ~190 MB download, ~750 MB installed) for the
#                                   BlazeFace ONNX export check
#   scripts/setup.sh --no-launcher  do not put an `nvr` launcher in ~/.local/bin
# Output: one line per step that does something (dots while a long one runs), then "setup: ready". A step's
# own output (apt, pip) is kept out of the way and shown only when it fails, or when it warns.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
launcher=1
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --no-launcher) launcher=0 ;;
    -h|--help) sed -n '2,9p' "$0" | cut -c3-; exit 0 ;;
    *) echo "setup: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

step_log=$(mktemp -t nvr-setup.XXXXXX)
trap 'rm -f "$step_log"' EXIT

# run_step WHAT COMMAND...: "setup: WHAT ..." with a dot every 3 s while COMMAND runs, then "done (N s)".
# COMMAND's output goes to a log: shown (its end) if it fails; its WARNING/ERROR lines are shown if not.
run_step() {
  local what=$1 start=$SECONDS ticks=0 pid status=0
  shift
  printf 'setup: %s ...' "$what"
  "$@" >"$step_log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    ticks=$((ticks + 1))
    if ((ticks % 3 == 0)); then printf '.'; fi
  done
  wait "$pid" || status=$?
  if ((status != 0)); then
    printf ' failed\n'
    tail -n 40 "$step_log" >&2
    echo "setup: $what failed (exit $status); the lines above are the end of its output" >&2
    exit "$status"
  fi
  printf ' done (%d s)\n' $((SECONDS - start))
  grep -E '^(WARNING|ERROR|E): ' "$step_log" | grep -v -E "$not_the_users_business" || true
}
# Warnings a successful step may print that need nothing from the user: a configured package index that
# lacks a project (pip looks elsewhere), a retried download.
not_the_users_business="is ignored: it is neither a file nor a directory|^WARNING: Retrying "

runtime_debs=(python3 python3-venv python3-pip)
test_debs=(mosquitto mosquitto-clients openssl ffmpeg systemd chromium chromium-driver
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav strace)
debs=("${runtime_debs[@]}")
((dev)) && debs+=("${test_debs[@]}")

missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  if ((${#sudo_cmd[@]})); then sudo -v; fi  # ask for the password before the output is captured
  install_debs() {
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@"
  }
  run_step "installing ${#missing[@]} Debian packages (${missing[*]})" install_debs "${missing[@]}"
fi

# The OS Python, with the system site-packages visible: HailoRT's `hailo_platform` comes from the
# `hailo-all` Debian package on a Raspberry Pi and is never installed from pip.
if [[ ! -x .venv/bin/python ]]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
  echo "setup: made .venv ($(/usr/bin/python3 --version), sees the system's packages, e.g. HailoRT)"
fi
# pip runs only when pyproject.toml changed since the last set-up (the install is editable, so code changes
# need none): running it again, as scripts/quickstart.sh does, is instant and works offline.
stamp=.venv/.nvr-setup
mode=runtime
((dev)) && mode=dev
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $mode"
installed=$(cat "$stamp" 2>/dev/null || true)
if [[ ! -x .venv/bin/nvr || ( "$installed" != "$wanted" && "$installed" != "${wanted% *} dev" ) ]]; then
  pip=(.venv/bin/python -m pip --disable-pip-version-check --no-input)
  python_packages() {
    "${pip[@]}" install --upgrade pip
    "${pip[@]}" install --root-user-action=ignore -e "$1"
  }
  if ((dev)); then
    run_step "installing nvr and its Python packages, with the test tools" python_packages ".[dev]"
    # The BlazeFace ONNX exporter (scripts/export_blazeface_onnx.py) and its test need PyTorch + onnx, at
    # export time only. Pinned: 2.13.0 is the CPU wheel CI provides locally; a newer x86 torch from PyPI
    # would pull several GB of CUDA libraries.
    run_step "installing PyTorch 2.13 (CPU, ~190 MB) for the BlazeFace export check" \
      "${pip[@]}" install --root-user-action=ignore "torch==2.13.0" "onnx>=1.15"
  else
    run_step "installing nvr and its Python packages" python_packages "."
  fi
  echo "$wanted" > "$stamp"
fi

# The README's commands say `nvr ...`: a launcher in ~/.local/bin (on the PATH of Debian's login shells
# once the folder exists) points at this checkout's .venv/bin/nvr.
if ((launcher)); then
  bin_dir="$HOME/.local/bin"
  target="$PWD/.venv/bin/nvr"
  link="$bin_dir/nvr"
  if [[ -L "$link" && "$(readlink "$link")" == "$target" ]]; then
    :
  elif [[ -e "$link" && ! -L "$link" ]]; then
    echo "setup: $link is not nvr's launcher: left alone (type $target instead)"
  else
    mkdir -p "$bin_dir"
    ln -sfn "$target" "$link"
    echo "setup: made the launcher $link -> $target"
  fi
  case ":$PATH:" in
    *":$bin_dir:"*) ;;
    *) echo "setup: $bin_dir is not on your PATH yet: open a new login shell (Debian's ~/.profile adds it) or type $target" ;;
  esac
fi
echo "setup: ready ($(.venv/bin/nvr --version))"
