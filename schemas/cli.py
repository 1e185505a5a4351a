"""``crosscam schemas export DIR``: write the public topics' JSON Schemas."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from schemas.codec import json_schema
from schemas.topics import TOPICS


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of the schema export command."""
    parser.add_argument("dir", type=Path, help="folder to write <topic>.schema.json files into")


def main(args: argparse.Namespace) -> int:
    """Write one JSON schema per JSON-encoded topic into the folder; the exit status."""
    args.dir.mkdir(parents=True, exist_ok=True)
    for topic in TOPICS.values():
        if topic.encoding != "json":
            continue
        path = args.dir / f"{topic.name}.schema.json"
        path.write_text(
            json.dumps(json_schema(topic.message_type), indent=2, sort_keys=True) + "\n"
        )
        print(path)
    return 0
