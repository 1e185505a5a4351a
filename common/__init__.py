"""Small pure helpers every package may import: one home for each small idea.

Imports only the standard library and numpy (never a stage, service/ or tooling):
:mod:`common.boxes` (box IoU), :mod:`common.vectors` (row normalisation),
:mod:`common.backoff` (capped exponential backoff with jitter), :mod:`common.units` (time units).
"""
