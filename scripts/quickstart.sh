#!/usr/bin/env bash
# One command from a fresh checkout to face events on the terminal:
#   scripts/quickstart.sh VIDEO        a local video file (played in a loop as if it were a camera)
#   scripts/quickstart.sh rtsp://...   or a camera stream
# Sets up .venv (scripts/setup.sh), pulls the SCRFD-2.5G CPU model into the model store (NVR_MODELS, default
# ~/.local/share/nvr/models; copied from the asset folder NVR_ASSETS when it has it, else downloaded), and runs
# the daemon with config/quickstart.yml (camera URL in NVR_CAMERA_URL): CPU backend, no MQTT broker needed.
set -euo pipefail
cd "$(dirname "$0")/.."

source_arg="${1:-}"
if [[ -z "$source_arg" ]]; then
  # Developers' machines carry a demo clip in the asset folder (NVR_ASSETS); users name their own video.
  assets="${NVR_ASSETS:-$(cd .. && pwd)/shared/assets}"
  source_arg="$assets/video/hamilton_clip.mp4"
  [[ -f "$source_arg" ]] || { echo "usage: scripts/quickstart.sh VIDEO_FILE|rtsp://URL" >&2; exit 2; }
fi
case "$source_arg" in
  *://*) url="$source_arg" ;;
  *) [[ -f "$source_arg" ]] || { echo "quickstart: no such video file: $source_arg" >&2; exit 2; }
     url="file://$(cd "$(dirname "$source_arg")" && pwd)/$(basename "$source_arg")" ;;
esac

scripts/setup.sh
.venv/bin/nvr models pull scrfd_2.5g-onnx
echo "quickstart: running nvr on $url (Ctrl-C to stop)"
NVR_CAMERA_URL="$url" exec .venv/bin/nvr run config/quickstart.yml
