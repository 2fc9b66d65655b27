"""Shared infrastructure of every op: errors and argument checks, platform and
implementation resolution, sharding helpers, float-exactness guards and
in-kernel math. Modules here import only each other (downward), never an op."""
