"""A real stage process for testing the shared consume loop (not a mock: real
Kafka, real run_stage). It copies each Frame from an input topic to an output
topic, slowly, so a signal can land in the middle of a batch.

    python -m tests.integration.loop_stage --in T_IN --out T_OUT --group G --bootstrap HOST:PORT

Frames with special camera ids exercise the failure paths:

* ``reject``: dead-lettered by the stage itself;
* ``poison``: ``handle`` raises ValueError (a bug: dead-lettered by the loop),
  unless ``--fixed`` (the bug fixed: for replaying dead letters);
* ``flaky``: raises ConnectionError the first ``--flaky N`` times (a dependency
  down, then back: retried by the loop).

With ``--stateful`` the stage remembers every (camera, seq) it applied and skips
replays, like the tracker and ReID do, and applies records one by one
(:func:`service.delivery.apply_each`): a record re-run after a partial batch
would yield nothing, so a lost output shows.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from schemas.messages import Frame
from schemas.topics import Topic
from service.delivery import apply_each
from service.kafka import Output, Record, dead_letter, install_stop_signals, run_stage
from service.logs import setup_logging
from service.settings import KafkaSettings


class CopyStage:
    """Frame in → same Frame out; see the module docstring for the special camera ids."""

    name = "loop-test"

    def __init__(
        self,
        input_topic: str,
        output_topic: str,
        delay_s: float,
        stateful: bool = False,
        flaky: int = 0,
        name: str = "loop-test",
        fixed: bool = False,
    ) -> None:
        self.name = name
        self.fixed = fixed
        self.input = Topic(input_topic, Frame, "msgpack", "camera_id")
        self.output_topic = output_topic
        self.delay_s = delay_s
        self.stateful = stateful
        self.flaky_left = flaky
        self.applied: set[tuple[str, int]] = set()
        self.in_batch = False

    def handle(self, records: list[Record]) -> list[Output]:
        print(f"batch records={len(records)}", flush=True)
        self.in_batch = True
        try:
            if self.stateful:
                return apply_each(records, self._one)
            return [o for rec in records for o in self._one(rec)]
        finally:
            self.in_batch = False

    def _one(self, rec: Record) -> list[Output]:
        time.sleep(self.delay_s)
        frame: Frame = rec.message
        if frame.camera_id == "reject":
            return [dead_letter(self.name, rec, "rejected by test stage")]
        if frame.camera_id == "poison" and not self.fixed:
            raise ValueError(f"poison frame seq={frame.seq}")
        if frame.camera_id == "flaky" and self.flaky_left > 0:
            self.flaky_left -= 1
            raise ConnectionError(f"dependency unreachable ({self.flaky_left} failures left)")
        if self.stateful:
            if (frame.camera_id, frame.seq) in self.applied:
                return []  # a replay: already applied, its output went out then
            self.applied.add((frame.camera_id, frame.seq))
        return [Output(self.output_topic, rec.key, rec.value)]

    def on_revoke(self, partitions: list[int]) -> None:
        """Prints whether a batch was in flight: a checkpoint then would be torn."""
        print(f"on_revoke partitions={partitions} in_batch={self.in_batch}", flush=True)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    settings = KafkaSettings(
        bootstrap_servers=args.bootstrap,
        max_batch_records=args.batch,
        batch_wait_ms=args.batch_wait_ms,
        max_message_bytes=args.max_message_bytes,
        reconnect_backoff_max_s=1.0,
        session_timeout_ms=args.session_timeout_ms,
    )
    stage = CopyStage(args.input, args.output, args.delay, args.stateful, args.flaky,
                      args.name, args.fixed)  # fmt: skip
    await run_stage(stage, settings, args.group, stop, partitions=1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--in", dest="input", required=True)
    p.add_argument("--out", dest="output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=int, default=0)
    p.add_argument("--stateful", action="store_true")
    p.add_argument("--flaky", type=int, default=0)
    p.add_argument("--max-message-bytes", type=int, default=16 * 1024 * 1024)
    p.add_argument("--session-timeout-ms", type=int, default=10_000)
    p.add_argument("--name", default="loop-test", help="the stage name (dead letters carry it)")
    p.add_argument("--fixed", action="store_true", help="poison frames pass: the bug is fixed")
    args = p.parse_args()
    setup_logging("INFO")
    print("ready", flush=True)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
