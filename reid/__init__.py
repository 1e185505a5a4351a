"""The ReID stage: cross-camera linking of finished tracklets.

Modules, one idea each:

* :mod:`reid.aggregate` — a tracklet's vector from its crops' vectors (outliers
  dropped, quality-weighted mean) plus a few per-crop "shots".
* :mod:`reid.topology` — the cameras file: cameras, map locations, which
  cameras connect and with what transit times.
* :mod:`reid.linker` — the pure linking core: constrained best-first
  clustering over a sliding window, global identities, match events.
* :mod:`reid.store` — the vector store interface and its Qdrant backends
  (embedded qdrant-edge, qdrant-client local mode, a Qdrant server).
* :mod:`evaluation.scenario` / :mod:`evaluation.mtmc` — a multi-camera scenario cut
  from PETS09-S2L1 and the MTMC evaluation over it.
* :mod:`reid.service`, :mod:`reid.api`, :mod:`reid.tail` — the Kafka stage,
  its HTTP query API and the match topic reader.
"""
