#!/usr/bin/python3
"""A local RTSP server that serves video files as looping live cameras.

Runs under the *system* Python (``/usr/bin/python3``): GStreamer's Python
bindings (``gi``) come from Debian packages and are not in the venv. It needs
nothing but the standard library and ``gi``, so it must not import crosscam.

Layout of ``--state-dir`` (owned by ``devstack.stack.RtspServer``)::

    mounts/<camera_id>.json   {"path": "...", "fps": 10.0 | null, "loop": true}
                              written by publish(), deleted by unpublish()
    status.json               written here: which mounts are live, or why not

The mounts folder is rescanned a few times a second, so cameras come and go
while the server runs, without a restart or a control socket.

A watchdog restarts a camera whose shared media has stalled: a client has
been PLAYING it for ``STALL_S`` seconds and not one RTP packet has left the
payloader since, while the producer kept decoding frames. Seen rarely on a
loaded machine (a session opens, and neither it nor any later one to the same
mount ever gets data; about 1 pre-encoded mount in 150 with two busy cores).
What the watchdog logged when it caught one: media prepared, pipeline
PLAYING, one buffer out of the payloader and 67 frames queued in the appsrc,
so the media's stream stayed blocked after its preroll buffer. The cause
inside gst-rtsp-server was not found, so the server detects it, logs the
media's state, drops that camera's clients (they reconnect, as a camera
client does) and rebuilds the mount.
``"restarts"`` in status.json counts these. A mount spec may carry
``"debug_stall": true`` to stall its first media once on purpose (tests).

Each camera is a *producer* pipeline that decodes the file in real time
(``appsink sync=true`` paces it at the file's rate, or at ``fps``), and seeks
back to the start on end-of-stream. Decoded frames are pushed into the
``appsrc`` of every RTSP media built for that camera; the media re-encodes to
H.264 (most files, e.g. PETS09's MS-MPEG4v3 AVI, have no RTP payloader). The
media is shared, so every client sees the same live stream, and a client that
joins late sees the current frame, as with a real camera. Keyframes every
``KEY_INT_MAX`` frames let a new client get a picture within about a second.

A mount with ``"encoded": "h264"`` names a file already encoded to H.264
(baseline, no B-frames, keyframes every ``KEY_INT_MAX`` frames, at the
camera's rate: ``devstack.stack.RtspServer.publish(pre_encode=True)`` makes
it once with ffmpeg and caches it). Its producer only demuxes and parses, and
the media only payloads: no decoder and no x264 encoder run per camera, as
with a real camera, whose own chip encodes. This is what benchmarks use, so
the encoder does not compete with the pipeline for the same cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtsp, GstRtspServer  # noqa: E402

log = logging.getLogger("crosscam.rtsp_server")

# A keyframe every this many frames: a new client waits at most this long for a picture.
KEY_INT_MAX = 10
# How often the mounts folder is rescanned.
RESCAN_INTERVAL_MS = 250
# A client PLAYING this long with no packet out while frames keep coming: the media stalled.
STALL_S = 5.0
# ... and at least this many frames decoded meanwhile (a paused producer is not a stall).
STALL_MIN_FRAMES = 10
CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

MEDIA_LAUNCH = (
    # A camera drops frames rather than falling behind: at most 2 frames wait
    # in the appsrc (the oldest go first), so a client sees the present.
    "( appsrc name=src is-live=true format=time do-timestamp=true "
    "max-buffers=2 max-bytes=0 leaky-type=downstream "
    "! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream "
    "! videoconvert ! video/x-raw,format=I420 "
    f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={KEY_INT_MAX} "
    "bitrate=2000 threads=1 "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


# Pre-encoded H.264: the media only parses and payloads what the producer pushes.
MEDIA_LAUNCH_H264 = (
    "( appsrc name=src is-live=true format=time do-timestamp=true "
    "max-buffers=30 max-bytes=0 "
    "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


@dataclass(frozen=True)
class MountSpec:
    """What one mounts/<camera_id>.json asks for."""

    path: str
    fps: float | None
    loop: bool
    encoded: bool = False  # the file is H.264 at the camera's rate: served as is
    debug_stall: bool = False  # stall the first media once, to exercise the watchdog

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> MountSpec:
        path = str(raw["path"])
        fps = raw.get("fps")
        if fps is not None:
            fps = float(fps)
            if not 0 < fps <= 240:
                raise ValueError(f"fps must be in (0, 240], got {fps}")
        if not os.path.isfile(path):
            raise ValueError(f"no such file: {path}")
        encoded = raw.get("encoded")
        if encoded not in (None, "h264"):
            raise ValueError(f"encoded must be 'h264' or absent, got {encoded!r}")
        return cls(
            path=path,
            fps=fps,
            loop=bool(raw.get("loop", True)),
            encoded=bool(encoded),
            debug_stall=bool(raw.get("debug_stall", False)),
        )


class Camera:
    """One file played as a live camera, feeding every media mounted for it."""

    def __init__(self, camera_id: str, spec: MountSpec) -> None:
        self.camera_id = camera_id
        self.spec = spec
        self.caps: Gst.Caps | None = None
        self.frames = 0
        self.loops = 0
        self.ended = False
        self.error: str | None = None
        self.held_media: GstRtspServer.RTSPMedia | None = None
        self.prepared = False  # the held media prerolled: clients can DESCRIBE
        self.sent = 0  # buffers out of the payloader of this camera's media
        # session id -> (monotonic time first seen PLAYING, frames then)
        self.watch: dict[str, tuple[float, int]] = {}
        # the last packet count seen by the watchdog, and (when it last moved, frames then)
        self._sent_seen = 0
        self._progress: tuple[float, int] = (time.monotonic(), 0)
        self.pay_sinkpad: Gst.Pad | None = None
        self._lock = threading.Lock()
        self._appsrcs: list[GstApp.AppSrc] = []
        self.pipeline = Gst.parse_launch(_producer_launch(spec))
        self.pipeline.get_by_name("file").set_property("location", spec.path)
        sink = self.pipeline.get_by_name("sink")
        sink.connect("new-sample", self._on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_bus)

    def start(self) -> None:
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError(f"cannot play {self.spec.path}")

    def stop(self) -> None:
        """Stop decoding and end every client's stream."""
        self._end_clients()
        self.pipeline.get_bus().remove_signal_watch()
        self.pipeline.set_state(Gst.State.NULL)

    @property
    def live(self) -> bool:
        return self.prepared and self.caps is not None and self.error is None and not self.ended

    # -- media side ---------------------------------------------------------
    def attach(self, media: GstRtspServer.RTSPMedia) -> None:
        """Called when the RTSP server built a media for this camera."""
        appsrc = media.get_element().get_by_name_recurse_up("src")
        if self.caps is not None:
            appsrc.set_property("caps", self.caps)
        with self._lock:
            self._appsrcs.append(appsrc)
        pay = media.get_element().get_by_name_recurse_up("pay0")
        pay.get_static_pad("src").add_probe(
            Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, self._on_sent
        )
        self.pay_sinkpad = pay.get_static_pad("sink")
        media.connect("unprepared", self._on_unprepared, appsrc)
        log.info("media attached camera=%s medias=%d", self.camera_id, len(self._appsrcs))

    def _on_unprepared(self, _media: GstRtspServer.RTSPMedia, appsrc: GstApp.AppSrc) -> None:
        with self._lock:
            if appsrc in self._appsrcs:
                self._appsrcs.remove(appsrc)
        log.info("media released camera=%s medias=%d", self.camera_id, len(self._appsrcs))

    def _on_sent(self, _pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        self.sent += 1
        return Gst.PadProbeReturn.OK

    def stalled(self, playing: set[str], now: float) -> bool:
        """Whether a client has been PLAYING while no packet went out for STALL_S
        (playing: the ids of this camera's PLAYING sessions), frames coming meanwhile.

        Quiet time counts from the later of the session's start and the last packet
        out, so packets still leaving just after a stall began (a loaded payloader
        finishing a frame) delay the verdict instead of hiding the stall for good."""
        if self.sent != self._sent_seen:
            self._sent_seen, self._progress = self.sent, (now, self.frames)
        self.watch = {sid: self.watch.get(sid, (now, self.frames)) for sid in playing}
        t_sent, frames_sent = self._progress
        return any(
            now - max(t0, t_sent) >= STALL_S
            and self.frames - max(frames0, frames_sent) >= STALL_MIN_FRAMES
            for t0, frames0 in self.watch.values()
        )

    def _end_clients(self) -> None:
        with self._lock:
            appsrcs, self._appsrcs = self._appsrcs, []
        for appsrc in appsrcs:
            appsrc.end_of_stream()

    # -- producer side (streaming thread) -----------------------------------
    def _on_sample(self, sink: GstApp.AppSink) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        if self.caps is None:
            self.caps = sample.get_caps()
        self.frames += 1
        with self._lock:
            appsrcs = list(self._appsrcs)
        for appsrc in appsrcs:
            # Each media stamps frames with its own running time (do-timestamp),
            # so the producer's file timestamps, which restart on every loop, are cleared.
            buf = sample.get_buffer().copy()
            buf.pts = buf.dts = buf.duration = Gst.CLOCK_TIME_NONE
            if appsrc.get_property("caps") is None:
                appsrc.set_property("caps", self.caps)
            appsrc.push_buffer(buf)
        return Gst.FlowReturn.OK

    def _on_bus(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        if msg.type == Gst.MessageType.EOS:
            if self.spec.loop:
                self.loops += 1
                self.pipeline.seek_simple(
                    Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0
                )
            else:
                log.info("camera ended camera=%s frames=%d", self.camera_id, self.frames)
                self.ended = True
                self._end_clients()
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            self.error = f"{err.message} ({debug})"
            log.error("camera failed camera=%s error=%s", self.camera_id, self.error)
            self._end_clients()


def _producer_launch(spec: MountSpec) -> str:
    """The producer pipeline: decode to raw frames, or (pre-encoded) only demux and parse."""
    if spec.encoded:
        # Compressed frames are never dropped (a dropped one corrupts the picture up
        # to the next keyframe); appsink's real-time pacing holds the file back instead.
        return (
            "filesrc name=file ! parsebin ! h264parse config-interval=-1 "
            "! video/x-h264,stream-format=byte-stream,alignment=au "
            "! appsink name=sink sync=true max-buffers=2 drop=false emit-signals=true"
        )
    rate = ""
    if spec.fps is not None:
        num, den = _fraction(spec.fps)
        rate = f"! videorate ! video/x-raw,framerate={num}/{den} "
    return (
        f"filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=I420 {rate}"
        "! appsink name=sink sync=true max-buffers=2 drop=true emit-signals=true"
    )


def _fraction(fps: float) -> tuple[int, int]:
    """fps as a GStreamer fraction (7.5 -> 15/2, 30000/1001 stays close)."""
    den = 1
    while abs(fps * den - round(fps * den)) > 1e-6 and den < 1001:
        den = den * 10 if den < 1000 else 1001
    return round(fps * den), den


class Server:
    """The RTSP server plus the mount table kept in sync with mounts/."""

    def __init__(self, host: str, port: int, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.mounts_dir = state_dir / "mounts"
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(host)
        self.server.set_service(str(port))
        self.port = port
        self.cameras: dict[str, Camera] = {}
        self.errors: dict[str, str] = {}
        self._seen: dict[str, tuple[float, int]] = {}
        self._last_status = ""
        self.restarts: dict[str, int] = {}  # camera id -> watchdog rebuilds
        self._stalled_once: set[str] = set()  # debug_stall applied

    def attach(self) -> None:
        if self.server.attach(None) == 0:
            raise OSError(f"cannot bind RTSP port {self.port} (in use?)")
        # Drop sessions of clients that vanished without TEARDOWN.
        GLib.timeout_add_seconds(2, self._cleanup_sessions)
        GLib.timeout_add_seconds(1, self._watchdog)
        GLib.timeout_add(RESCAN_INTERVAL_MS, self._rescan)
        self._rescan()

    def _cleanup_sessions(self) -> bool:
        self.server.get_session_pool().cleanup()
        return True

    def _playing(self) -> dict[str, set[str]]:
        """camera id -> the ids of the sessions PLAYING it."""
        out: dict[str, set[str]] = {}
        for session in self.server.get_session_pool().filter(None, None):
            for camera_id in self.cameras:
                session_media, _ = session.get_media(f"/{camera_id}")
                if (
                    session_media is not None
                    and session_media.get_rtsp_state() == GstRtsp.RTSPState.PLAYING
                ):
                    out.setdefault(camera_id, set()).add(session.get_sessionid())
        return out

    def _watchdog(self) -> bool:
        try:
            playing = self._playing()
            now = time.monotonic()
            for camera_id, camera in list(self.cameras.items()):
                clients = playing.get(camera_id, set())
                pad = camera.pay_sinkpad
                if (
                    camera.spec.debug_stall
                    and clients
                    and pad is not None
                    and camera_id not in self._stalled_once
                ):
                    self._stalled_once.add(camera_id)
                    pad.add_probe(
                        Gst.PadProbeType.BLOCK | Gst.PadProbeType.BUFFER,
                        lambda *_: Gst.PadProbeReturn.OK,
                    )
                    log.warning("debug stall camera=%s", camera_id)
                if camera.live and camera.stalled(clients, now):
                    self._restart(camera_id, camera)
        except Exception:  # the watchdog must never stop the server
            log.exception("watchdog failed")
        return True

    def _restart(self, camera_id: str, camera: Camera) -> None:
        media = camera.held_media
        element = media.get_element() if media is not None else None
        appsrc = element.get_by_name_recurse_up("src") if element is not None else None
        log.error(
            "media stalled camera=%s sessions=%d sent=%d frames=%d media_status=%s "
            "pipeline_state=%s appsrc_queued=%s: dropping its clients and rebuilding the mount",
            camera_id,
            len(camera.watch),
            camera.sent,
            camera.frames,
            media.get_status().value_nick if media is not None else None,
            element.get_parent().get_state(0)[1].value_nick
            if element is not None and element.get_parent() is not None
            else None,
            appsrc.get_property("current-level-buffers") if appsrc is not None else None,
        )
        path = f"/{camera_id}"

        def on_camera(_server: Any, client: Any, _data: Any) -> Any:
            for session in client.session_filter(None, None):
                if session.get_media(path)[0] is not None:
                    return GstRtspServer.RTSPFilterResult.REMOVE
            return GstRtspServer.RTSPFilterResult.KEEP

        self.server.client_filter(on_camera, None)
        stamp, spec = self._seen.get(camera_id), camera.spec
        restarts, stalled_once = self.restarts.get(camera_id, 0), camera_id in self._stalled_once
        self._remove(camera_id)
        self.restarts[camera_id] = restarts + 1
        if stalled_once:
            self._stalled_once.add(camera_id)
        if stamp is not None:
            self._seen[camera_id] = stamp
        self._add(camera_id, spec)

    def _rescan(self) -> bool:
        try:
            self._sync_mounts()
            self._write_status()
        except Exception:  # keep serving the other cameras whatever one file holds
            log.exception("rescan failed")
        return True

    def _sync_mounts(self) -> None:
        wanted: dict[str, tuple[float, int]] = {}
        for f in self.mounts_dir.glob("*.json"):
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            wanted[f.stem] = (st.st_mtime, st.st_size)
        for camera_id in list(self._seen):
            if camera_id not in wanted or wanted[camera_id] != self._seen[camera_id]:
                self._remove(camera_id)
        for camera_id, stamp in wanted.items():
            if camera_id in self._seen:
                continue
            self._seen[camera_id] = stamp
            try:
                if not CAMERA_ID_RE.match(camera_id):
                    raise ValueError(f"bad camera id {camera_id!r}")
                spec = MountSpec.parse(
                    json.loads((self.mounts_dir / f"{camera_id}.json").read_text())
                )
                self._add(camera_id, spec)
            except Exception as exc:  # noqa: BLE001 - reported in status.json
                self.errors[camera_id] = f"{type(exc).__name__}: {exc}"
                log.error("mount failed camera=%s error=%s", camera_id, self.errors[camera_id])

    def _add(self, camera_id: str, spec: MountSpec) -> None:
        camera = Camera(camera_id, spec)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(MEDIA_LAUNCH_H264 if spec.encoded else MEDIA_LAUNCH)
        factory.set_shared(True)
        factory.set_latency(0)
        factory.connect("media-configure", lambda _f, media: camera.attach(media))
        camera.start()
        self.cameras[camera_id] = camera
        self.server.get_mount_points().add_factory(f"/{camera_id}", factory)
        # Build the shared media now and hold one "prepare" of it for the
        # camera's lifetime. Media are prepare-counted: clients come and go
        # without it ever unpreparing. Otherwise a client that connects while
        # the previous last client's media is still unpreparing gets a 503,
        # and the stream would restart per client instead of running live.
        url = GstRtsp.RTSPUrl.parse(f"rtsp://127.0.0.1:{self.port}/{camera_id}")[1]
        media = factory.construct(url)
        if media is None:
            raise RuntimeError(f"cannot build the RTSP media of {camera_id}")
        camera.held_media = media
        # prepare() blocks until the pipeline prerolls, which needs a bus
        # handled elsewhere: a media thread from the server's pool, called
        # from a worker so the main loop (mount scans, EOS loops) never stalls.
        thread = self.server.get_thread_pool().get_thread(
            GstRtspServer.RTSPThreadType.MEDIA, GstRtspServer.RTSPContext()
        )

        def prepare() -> None:
            if media.prepare(thread):
                camera.prepared = True
            else:
                camera.error = "the RTSP media did not prepare"
                log.error("media prepare failed camera=%s", camera_id)

        threading.Thread(target=prepare, name=f"prepare-{camera_id}", daemon=True).start()
        log.info(
            "mount added camera=%s path=%s fps=%s loop=%s",
            camera_id,
            spec.path,
            spec.fps,
            spec.loop,
        )

    def _remove(self, camera_id: str) -> None:
        self._seen.pop(camera_id, None)
        self.errors.pop(camera_id, None)
        self.restarts.pop(camera_id, None)
        self._stalled_once.discard(camera_id)
        camera = self.cameras.pop(camera_id, None)
        if camera is None:
            return
        self.server.get_mount_points().remove_factory(f"/{camera_id}")
        camera.stop()
        if camera.held_media is not None:
            camera.held_media.unprepare()
            camera.held_media = None
        log.info("mount removed camera=%s", camera_id)

    def _write_status(self) -> None:
        mounts: dict[str, dict[str, Any]] = {}
        for camera_id, cam in self.cameras.items():
            state = (
                "error"
                if cam.error
                else "ended"
                if cam.ended
                else "live"
                if cam.live
                else "starting"
            )
            mounts[camera_id] = {
                "state": state,
                "path": cam.spec.path,
                "fps": cam.spec.fps,
                "loop": cam.spec.loop,
                "encoded": cam.spec.encoded,
                "error": cam.error,
                "restarts": self.restarts.get(camera_id, 0),
            }
        for camera_id, err in self.errors.items():
            mounts[camera_id] = {"state": "error", "error": err}
        status = json.dumps(
            {"pid": os.getpid(), "port": self.port, "mounts": mounts}, sort_keys=True
        )
        if status != self._last_status:  # frame counters are left out so this rarely writes
            tmp = self.state_dir / "status.json.tmp"
            tmp.write_text(status)
            tmp.replace(self.state_dir / "status.json")
            self._last_status = status

    def shutdown(self) -> None:
        for camera_id in list(self.cameras):
            self._remove(camera_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    Gst.init(None)
    server = Server(args.host, args.port, args.state_dir)
    loop = GLib.MainLoop()
    try:
        server.attach()
    except OSError as exc:
        log.error("%s", exc)
        return 2
    log.info(
        "rtsp server listening host=%s port=%d state_dir=%s", args.host, args.port, args.state_dir
    )

    def _stop() -> bool:
        log.info("rtsp server stopping")
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _stop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _stop)
    started = time.monotonic()
    loop.run()
    server.shutdown()
    (args.state_dir / "status.json").unlink(missing_ok=True)
    log.info("rtsp server stopped uptime_s=%.1f", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
