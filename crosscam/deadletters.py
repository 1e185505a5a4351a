"""``crosscam deadletters list|replay``: look at a stage's dead letters, and re-publish them after a fix.

``list`` reads the dead-letter topic from the beginning and prints the dead
letters of one stage (``--since`` a time), each marked replayed or not.

``replay`` re-publishes the original bytes of each dead letter to its original
topic with its original key (so it lands on the same partition as before and
the stage handles it again). It is idempotent: a consumer group per stage,
``crosscam-deadletters-replay-<stage>``, keeps a cursor on the dead-letter
topic, committed only after every re-published record is acknowledged; a
second run replays only dead letters that arrived since. Every dead letter the
cursor passes is reported as JSON: ``replayed``; ``skipped`` with the reason,
older than ``--since`` (passed over for good) or truncated (its original bytes
are gone); ``refused`` by the broker as too large. On any other broker error
(``retry``) the cursor stays put and the command exits 1: run it again.

``--since`` takes an ISO-8601 time (UTC when no zone is given) or an age such
as ``30m``, ``2h``, ``1d``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from schemas.codec import DecodeError, decode
from schemas.messages import DeadLetter
from schemas.topics import DEADLETTER
from service.settings import default_kafka_bootstrap

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FETCH_BYTES = 64 * 1024 * 1024


def parse_since(text: str, now_ns: int | None = None) -> int:
    """``--since`` as Unix nanoseconds: an ISO-8601 time, or an age (``30m``) before now."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    age = _AGE.match(text.strip())
    if age:
        return now_ns - int(float(age.group(1)) * _UNIT_S[age.group(2)] * 1e9)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: expected an ISO-8601 time or an age like 30m, 2h, 1d"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def replay_group(stage: str) -> str:
    """The consumer group that holds ``replay``'s cursor for ``stage``."""
    return f"crosscam-deadletters-replay-{stage}"


@dataclass(frozen=True)
class Entry:
    """One dead letter, where it sits in the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter

    def summary(self, replay_done: bool | None = None) -> dict[str, Any]:
        """A JSON-able description (the value bytes left out).

        ``replay_done``: ``replay``'s cursor is past it (re-published or passed over).
        """
        d = self.letter
        out: dict[str, Any] = {
            "at": datetime.fromtimestamp(d.ts_ns / 1e9, UTC).isoformat(timespec="milliseconds"),
            "stage": d.stage,
            "topic": d.topic,
            "partition": d.partition,
            "offset": d.offset,
            "key": (d.key or b"").decode(errors="replace"),
            "reason": d.reason,
            "value_size": d.value_size or len(d.value),
            "value_sha256": d.value_sha256,
            "truncated": d.truncated,
            "deadletter_partition": self.partition,
            "deadletter_offset": self.offset,
        }
        if replay_done is not None:
            out["replay_done"] = replay_done
        return out


async def _read(
    consumer: AIOKafkaConsumer,
    start: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    stage: str,
) -> list[Entry]:
    """Dead letters of ``stage`` from ``start`` up to ``ends`` in each partition."""
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    todo = {tp for tp in start if start[tp] < ends[tp]}
    found: list[Entry] = []
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=1000)
        for tp, msgs in batch.items():
            for m in msgs:
                if m.offset >= ends[tp]:
                    continue
                try:
                    letter = decode(DeadLetter, m.value)
                except DecodeError:
                    continue  # not ours to judge: some other writer's record
                if letter.stage == stage:
                    found.append(Entry(tp.partition, m.offset, letter))
        todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    return sorted(found, key=lambda e: (e.letter.ts_ns, e.partition, e.offset))


def _consumer(bootstrap: str, group: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=_FETCH_BYTES,
        fetch_max_bytes=_FETCH_BYTES,
    )


async def _partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(DEADLETTER.name)
    if parts is None:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - first look at the topic
        parts = consumer.partitions_for_topic(DEADLETTER.name) or set()
    tps = [TopicPartition(DEADLETTER.name, p) for p in sorted(parts)]
    consumer.assign(tps)
    return tps


async def _cursor(bootstrap: str, stage: str) -> dict[int, int]:
    """The replay cursor of ``stage``: dead-letter partition -> first offset not yet considered."""
    consumer = _consumer(bootstrap, replay_group(stage))
    await consumer.start()
    try:
        tps = await _partitions(consumer)
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


async def list_dead_letters(bootstrap: str, stage: str, since_ns: int = 0) -> list[dict[str, Any]]:
    """Every dead letter of ``stage`` since ``since_ns``, oldest first, marked replayed or not."""
    cursor = await _cursor(bootstrap, stage)
    consumer = _consumer(bootstrap, None)
    await consumer.start()
    try:
        tps = await _partitions(consumer)
        ends = await consumer.end_offsets(tps)
        entries = await _read(consumer, dict.fromkeys(tps, 0), ends, stage)
    finally:
        await consumer.stop()
    return [
        e.summary(replay_done=e.offset < cursor.get(e.partition, 0))
        for e in entries
        if e.letter.ts_ns >= since_ns
    ]


async def replay_dead_letters(bootstrap: str, stage: str, since_ns: int = 0) -> dict[str, Any]:
    """Re-publish ``stage``'s dead letters not replayed yet; what was replayed and skipped."""
    consumer = _consumer(bootstrap, replay_group(stage))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=_FETCH_BYTES
    )
    await consumer.start()
    await producer.start()
    try:
        tps = await _partitions(consumer)
        start = {tp: (await consumer.committed(tp)) or 0 for tp in tps}
        ends = await consumer.end_offsets(tps)
        entries = await _read(consumer, start, ends, stage)
        report = await _republish(producer, entries, since_ns)
        moved = {tp: ends[tp] for tp in tps if ends[tp] > start[tp]}
        if moved and not report["retry"]:
            await consumer.commit(moved)
    finally:
        await producer.stop()
        await consumer.stop()
    return {"stage": stage, **report}


async def _republish(
    producer: AIOKafkaProducer, entries: list[Entry], since_ns: int
) -> dict[str, list[dict[str, Any]]]:
    """Send every replayable entry and wait for the acks.

    ``replayed``: acknowledged. ``skipped``: not sent, and why. ``refused``:
    the broker will never take it (too large). ``retry``: a broker error; the
    cursor then stays put, so the next run tries again.
    """
    report: dict[str, list[dict[str, Any]]] = {
        "replayed": [],
        "skipped": [],
        "refused": [],
        "retry": [],
    }
    sent: list[tuple[Entry, Any]] = []
    for e in entries:
        d = e.letter
        if d.ts_ns < since_ns:
            report["skipped"].append({**e.summary(), "why": "older than --since"})
        elif d.truncated:
            report["skipped"].append(
                {**e.summary(), "why": "truncated: the original bytes are gone"}
            )
        else:
            sent.append((e, asyncio.ensure_future(producer.send_and_wait(d.topic, d.value, d.key))))
    for e, fut in sent:
        try:
            await fut
            report["replayed"].append(e.summary())
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            report["refused"].append({**e.summary(), "why": repr(exc)})
        except KafkaError as exc:
            report["retry"].append({**e.summary(), "why": repr(exc)})
    return report


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage", required=True, help="the stage whose dead letters (e.g. tracker)"
    )
    parser.add_argument(
        "--since", type=parse_since, default=0, help="ISO-8601 time or age (30m, 2h, 1d)"
    )
    parser.add_argument(
        "--bootstrap-servers", default=None, help="Kafka host:port (default: the local stack)"
    )


def configure_list(parser: argparse.ArgumentParser) -> None:
    """Flags of ``deadletters list``."""
    _add_common(parser)
    parser.add_argument("--json", action="store_true", help="one JSON array instead of lines")


def configure_replay(parser: argparse.ArgumentParser) -> None:
    """Flags of ``deadletters replay``."""
    _add_common(parser)


def main_list(args: argparse.Namespace) -> int:
    """Print the stage's dead letters."""
    bootstrap = args.bootstrap_servers or default_kafka_bootstrap()
    rows = asyncio.run(list_dead_letters(bootstrap, args.stage, args.since))
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    for r in rows:
        flags = " truncated" if r["truncated"] else ""
        flags += " replay-done" if r["replay_done"] else ""
        print(f"{r['at']}  {r['topic']}[{r['partition']}]@{r['offset']}  key={r['key']}  "
              f"{r['value_size']} B{flags}  {r['reason']}")  # fmt: skip
    print(f"{len(rows)} dead letter(s) of stage {args.stage}", file=sys.stderr)
    return 0


def main_replay(args: argparse.Namespace) -> int:
    """Re-publish the stage's dead letters not replayed yet; print the report as JSON."""
    bootstrap = args.bootstrap_servers or default_kafka_bootstrap()
    report = asyncio.run(replay_dead_letters(bootstrap, args.stage, args.since))
    json.dump(report, sys.stdout, indent=1)
    print()
    print(f"replayed {len(report['replayed'])}, skipped {len(report['skipped'])}, "
          f"refused {len(report['refused'])}, to retry {len(report['retry'])}", file=sys.stderr)  # fmt: skip
    return 1 if report["retry"] else 0
