"""A real stage process for testing the shared consume loop (not a mock: real
Kafka, real run_stage). It copies each Frame from an input topic to an output
topic, slowly, so a signal can land in the middle of a batch.

    python -m tests.integration.loop_stage --in T_IN --out T_OUT --group G --bootstrap HOST:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import time

from schemas.messages import Frame
from schemas.topics import Topic
from service.kafka import Output, Record, dead_letter, install_stop_signals, run_stage
from service.logs import setup_logging
from service.settings import KafkaSettings


class CopyStage:
    """Frame in → same Frame out; a Frame whose camera_id is ``"reject"`` is dead-lettered."""

    name = "loop-test"

    def __init__(self, input_topic: str, output_topic: str, delay_s: float) -> None:
        self.input = Topic(input_topic, Frame, "msgpack", "camera_id")
        self.output_topic = output_topic
        self.delay_s = delay_s

    def handle(self, records: list[Record]) -> list[Output]:
        out: list[Output] = []
        print(f"batch records={len(records)}", flush=True)
        for rec in records:
            time.sleep(self.delay_s)
            if rec.message.camera_id == "reject":
                out.append(dead_letter(self.name, rec, "rejected by test stage"))
            else:
                out.append(Output(self.output_topic, rec.key, rec.value))
        return out


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    settings = KafkaSettings(
        bootstrap_servers=args.bootstrap,
        max_batch_records=args.batch,
        batch_wait_ms=args.batch_wait_ms,
    )
    await run_stage(
        CopyStage(args.input, args.output, args.delay), settings, args.group, stop, partitions=1
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--in", dest="input", required=True)
    p.add_argument("--out", dest="output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=int, default=0)
    args = p.parse_args()
    setup_logging("INFO")
    print("ready", flush=True)
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
