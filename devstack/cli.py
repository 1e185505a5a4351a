"""``crosscam stack up | status | down``: the local Kafka, Redis and RTSP server.

Thin argparse wrappers around :mod:`devstack.stack`; each prints the stack's
status as one JSON object on stdout (logs go to stderr), so scripts can
``crosscam stack status | jq .kafka``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from devstack import stack


def _print_status(state: dict[str, str]) -> None:
    print(json.dumps(state, sort_keys=True), flush=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")


def configure_up(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument(
        "--services",
        default=",".join(stack.SERVICES),
        help="comma-separated subset of kafka,redis,rtsp,prometheus (default: %(default)s)",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also start Prometheus (scrapes <state>/prometheus/targets/*.json)",
    )
    parser.add_argument(
        "--kafka-sasl",
        action="store_true",
        help="also SASL/SCRAM listeners: plain (CROSSCAM_KAFKA_SASL_PORT, default Kafka port + 2) "
        "and TLS (CROSSCAM_KAFKA_SASL_TLS_PORT, + 3; CA in <state>/kafka/tls/ca.crt); user "
        "CROSSCAM_KAFKA_SASL_USER / _PASSWORD",
    )


def main_up(args: argparse.Namespace) -> int:
    """Start what is not running, wait until it answers, print the status JSON."""
    _setup_logging(args.verbose)
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    try:
        cfg = stack.StackConfig.from_env()
        if args.kafka_sasl:
            cfg = dataclasses.replace(
                cfg,
                kafka_sasl_port=cfg.kafka_sasl_port or cfg.kafka_port + 2,
                kafka_sasl_tls_port=cfg.kafka_sasl_tls_port or cfg.kafka_port + 3,
            )
        state = stack.up(services, prometheus=args.prometheus, cfg=cfg)
    except (stack.StackError, ValueError, OSError) as exc:
        print(f"crosscam stack up failed: {exc}", file=sys.stderr)
        return 1
    _print_status(state)
    bad = [s for s in services if state.get(s) != "up"]
    if bad:
        print(f"crosscam stack up: not up: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def configure_status(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)


def main_status(args: argparse.Namespace) -> int:
    """Print each service's state; exit 0 whatever it is (the JSON says)."""
    _setup_logging(args.verbose)
    _print_status(stack.status())
    return 0


def configure_down(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)


def main_down(args: argparse.Namespace) -> int:
    """Stop every process `stack up` started; data in the state dir stays."""
    _setup_logging(args.verbose)
    try:
        state = stack.down()
    except (stack.StackError, OSError) as exc:
        print(f"crosscam stack down failed: {exc}", file=sys.stderr)
        return 1
    _print_status(state)
    return 0
