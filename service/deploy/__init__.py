"""Deployment: a local cluster of replicas behind HAProxy, with Redis (docs/scaling.md)."""
