"""One sample message of every v1 type; the golden files are their encodings."""

from __future__ import annotations

import numpy as np

from schemas.messages import (
    Crop,
    DeadLetter,
    Detections,
    Frame,
    Match,
    MatchedTracklet,
    Tracklet,
    pack_f32,
)

T0 = 1_732_406_400_000_000_000  # 2024-11-24T00:00:00Z in ns


def samples() -> dict[str, object]:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [200.5, 30.25, 240.0, 150.0]], dtype=np.float32)
    emb = np.zeros((2, 4), dtype=np.float32)
    emb[0, 0] = 1.0
    emb[1, 1:3] = 0.70710677
    return {
        "frame": Frame(
            camera_id="cam1",
            seq=7,
            ts_capture_ns=T0,
            width=4,
            height=2,
            jpeg=b"\xff\xd8jpeg\xff\xd9",
            source="rtsp://127.0.0.1:18554/cam1",
        ),
        "frame_eos": Frame(camera_id="cam1", seq=8, ts_capture_ns=T0 + 1, eos=True),
        "detections": Detections(
            camera_id="cam1",
            seq=7,
            ts_capture_ns=T0,
            width=640,
            height=480,
            boxes_xyxy=pack_f32(boxes),
            scores=pack_f32(np.array([0.9, 0.55])),
            embeddings=pack_f32(emb),
            embedding_dim=4,
            sharpness=pack_f32(np.array([12.5, 3.0])),
            crops_jpeg=[b"a", b"b"],
            ts_detected_ns=T0 + 5,
        ),
        "tracklet": Tracklet(
            camera_id="cam2",
            tracklet_id=f"cam2:3:{T0}",
            track_id=3,
            ts_start_ns=T0,
            ts_end_ns=T0 + 10**9,
            frame_width=640,
            frame_height=480,
            frame_seqs=[1, 2],
            frame_ts_ns=[T0, T0 + 10**9],
            boxes_xyxy=pack_f32(boxes),
            box_scores=pack_f32(np.array([0.9, 0.8])),
            crops=[
                Crop(
                    seq=2,
                    ts_capture_ns=T0 + 10**9,
                    box_xyxy=[1.0, 2.0, 3.0, 4.0],
                    score=0.8,
                    quality=0.5,
                    jpeg=b"j",
                    embedding=pack_f32(emb[0]),
                )
            ],
            embeddings=pack_f32(emb),
            embedding_dim=4,
            end_reason="lost",
        ),
        "match": Match(
            kind="link",
            global_id="g-000001",
            tracklet_id=f"cam2:3:{T0}",
            camera_id="cam2",
            ts_start_ns=T0,
            ts_end_ns=T0 + 10**9,
            matched=[
                MatchedTracklet(
                    tracklet_id=f"cam1:1:{T0 - 10**10}",
                    camera_id="cam1",
                    ts_start_ns=T0 - 10**10,
                    ts_end_ns=T0 - 5 * 10**9,
                    distance=0.21,
                )
            ],
            thumbnail_ref="thumbs/cam2/3.jpg",
            ts_emitted_ns=T0 + 2 * 10**9,
        ),
        "deadletter": DeadLetter(
            stage="detector",
            topic="crosscam.frames.v1",
            partition=1,
            offset=42,
            reason="invalid Frame",
            key=b"cam1",
            value=b"\x00garbage",
            ts_ns=T0,
        ),
    }
