"""Typed contracts shared by every layer: manifests, the feature contract, id and path safety."""
