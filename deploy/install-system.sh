#!/usr/bin/env bash
# System packages the local stack (`crosscam stack up`) needs on Debian/Ubuntu:
# a Java runtime and Maven (Kafka from Apache's jars), redis-server, GStreamer
# with the RTSP server and its Python bindings (devstack/rtsp_server.py runs under
# /usr/bin/python3), ffmpeg, Prometheus (and promtool), and docker-compose (to
# validate the compose file; no Docker engine is needed or started).
#
# Idempotent and quiet: installs only what is missing, and touches apt (update,
# install) only when something is. Runs as root, or through sudo otherwise.
set -euo pipefail

PACKAGES=(
  maven
  redis-server
  ffmpeg
  gstreamer1.0-tools
  gstreamer1.0-plugins-base   # videoconvert, videorate, appsrc/appsink
  gstreamer1.0-plugins-good   # avidemux, rtph264pay
  gstreamer1.0-plugins-bad    # h264parse and friends, used by ingest pipelines
  gstreamer1.0-plugins-ugly   # x264enc
  gstreamer1.0-libav          # decoders for old codecs (PETS09 is MS-MPEG4v3)
  gir1.2-gstreamer-1.0
  gir1.2-gst-plugins-base-1.0 # GstApp
  gir1.2-gst-rtsp-server-1.0
  python3-gi
  python3-gst-1.0
  prometheus                  # also promtool: alert rules checked and unit-tested in make test
  docker-compose              # `docker-compose config` checks the site compose file (no engine needed)
  openssl                     # the local broker's TLS certificate (`crosscam stack up --kafka-sasl`)
  chromium                    # headless browser of the gallery end-to-end test (tests/e2e/test_gallery.py)
)

# Any Java 17+ will do; install Debian's default only when there is none.
if ! command -v java >/dev/null 2>&1; then
  PACKAGES+=(default-jre-headless)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system: all system packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-system: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi

echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-system: done"
