"""The ReID stage: cross-camera linking of finished tracklets.

Pure core, one idea per module:

* :mod:`reid.aggregate` — a tracklet's vector from its crops' vectors (outliers
  dropped, quality-weighted mean) plus a few per-crop "shots".
* :mod:`reid.topology` — the cameras file: cameras, map locations, which
  cameras connect and with what transit times.
* :mod:`reid.linker` — the linking core: constrained best-first clustering
  over a sliding window, global identities, match events.
* :mod:`reid.store` — the vector store protocol (types, scope, point ids).
* :mod:`reid.engine` — one tracklet in, identities out (aggregate + store + linker).
* :mod:`reid.query` — re-identify queries for the gallery.

Service side: :mod:`reid.qdrant_store` (the Qdrant adapters),
:mod:`reid.service` (the Kafka stage), :mod:`reid.api` (its HTTP query API),
:mod:`reid.tail` (the match topic reader), :mod:`reid.export` (OSNet to
ONNX), :mod:`reid.settings` (inherits the linker's and aggregation's
parameters) and :mod:`reid.metrics`.
"""
