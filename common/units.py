"""Time units: every timestamp in crosscam is integer nanoseconds since the Unix epoch."""

NS_PER_S = 1_000_000_000
"""Nanoseconds in one second."""

NS_PER_MS = 1_000_000
"""Nanoseconds in one millisecond."""
