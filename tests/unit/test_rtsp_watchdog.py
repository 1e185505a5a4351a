"""The test RTSP server's stall rule (``Camera.stalled``), run on the system Python that
runs the server (GStreamer's bindings live there, not in the virtualenv).

The live check is ``test_stalled_camera_media_is_rebuilt_and_clients_reconnect``;
this one pins the rule on made-up times, including the case that once hid a stall
for good in CI: packets still leaving just after the watchdog first saw the client.
"""

from __future__ import annotations

import json
import subprocess

from devstack.stack import RTSP_SERVER_SCRIPT, SYSTEM_PYTHON

PROBE = r"""
import importlib.util, json, sys, types
spec = importlib.util.spec_from_file_location("rtsp_server", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
sys.modules["rtsp_server"] = mod  # its dataclasses look their module up
spec.loader.exec_module(mod)

def camera():
    return types.SimpleNamespace(sent=0, frames=0, watch={}, _sent_seen=0, _progress=(0.0, 0))

def run(steps):
    # steps: (time, packets out by then, frames decoded by then, sessions playing)
    cam, verdicts = camera(), []
    for now, sent, frames, playing in steps:
        cam.sent, cam.frames = sent, frames
        verdicts.append(mod.Camera.stalled(cam, set(playing), now))
    return verdicts

S, F = mod.STALL_S, mod.STALL_MIN_FRAMES
out = {
    "stall_s": S,
    # packets flow the whole time: never a stall
    "flowing": run([(t, 10 * t, 10 * t, ["a"]) for t in range(1, 12)]),
    # packets stop when the client starts: a stall once STALL_S has passed
    "stopped": run([(t, 5, 10 * t, ["a"]) for t in range(1, 12)]),
    # packets still leave for 2 s after the watchdog first saw the client, then stop
    "late_packets": run([(t, 5 + min(t, 3), 10 * t, ["a"]) for t in range(1, 12)]),
    # nothing sent, but the producer is paused too (no frames): not a stall
    "paused": run([(t, 5, 3, ["a"]) for t in range(1, 12)]),
    # nobody playing: not a stall
    "no_client": run([(t, 5, 10 * t, []) for t in range(1, 12)]),
}
print(json.dumps(out))
"""


def _verdicts() -> dict:
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", PROBE, str(RTSP_SERVER_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_a_stall_is_found_even_when_packets_trickle_out_after_the_client_started() -> None:
    v = _verdicts()
    first = int(v["stall_s"])  # steps are one second apart, starting at t = 1
    assert not any(v["flowing"]) and not any(v["paused"]) and not any(v["no_client"])
    # no packet since t = 1: stalled from t = 1 + STALL_S on
    assert v["stopped"].index(True) == first
    # the last packet left at t = 3: stalled from t = 3 + STALL_S on, and it stays so
    late = v["late_packets"]
    assert late.index(True) == first + 2 and all(late[first + 2 :]), late
