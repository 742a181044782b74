#!/usr/bin/env bash
# Set up nvr in ./.venv on Debian / Raspberry Pi OS. Idempotent: run it again after a `git pull`.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --dev    plus what the tests need (mosquitto, GStreamer RTSP server, ffmpeg, dev tools)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

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
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The OS Python, with the system site-packages visible: HailoRT's `hailo_platform` comes from the
# `hailo-all` Debian package on a Raspberry Pi and is never installed from pip.
python=/usr/bin/python3
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv --system-site-packages .venv
fi
# pip runs only when pyproject.toml changed since the last set-up (the install is editable, so code changes
# need none): running it again, as scripts/quickstart.sh does, is instant and works offline.
stamp=.venv/.nvr-setup
mode=runtime
((dev)) && mode=dev
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $mode"
installed=$(cat "$stamp" 2>/dev/null || true)
if [[ -x .venv/bin/nvr && ( "$installed" == "$wanted" || "$installed" == "${wanted% *} dev" ) ]]; then
  :  # up to date (a dev install includes the runtime one)
else
  .venv/bin/python -m pip install -q --upgrade pip
  if ((dev)); then
    .venv/bin/python -m pip install -q -e ".[dev]"
    # The BlazeFace ONNX exporter (scripts/export_blazeface_onnx.py) and its tests need PyTorch + onnx, at
    # export time only. Pinned: 2.13.0 is the CPU wheel CI provides locally; a newer x86 torch from PyPI
    # would pull several GB of CUDA libraries.
    .venv/bin/python -m pip install -q "torch==2.13.0" "onnx>=1.15"
  else
    .venv/bin/python -m pip install -q -e .
  fi
  echo "$wanted" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/nvr --version))"
