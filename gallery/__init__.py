"""The web gallery: identities, cameras and re-identify queries for operators.

A separate process from the ReID stage. It serves a static single-page UI
(``gallery/static``, no build step, nothing fetched from outside), proxies
``/api/*`` to the ReID service's HTTP API (the only process that may open the
embedded vector store), and adds what the ReID API does not own: the camera
map from the cameras file and each camera's live status from Redis.
"""
