"""Shared service plumbing: settings, logging, metrics, the Kafka consume loop, assets."""
