"""crosscam: pedestrian tracking across non-overlapping cameras, over Kafka.

This package holds the command line (``crosscam``), the local stack manager and
the whole-pipeline runner. The stages live in their own top-level packages:
``ingest``, ``detector``, ``tracker``, ``reid``; their contracts in ``schemas``;
the shared Kafka/metrics/settings plumbing in ``service``.
"""

__version__ = "0.1.0"
