"""MLflow tracking, registry aliases, promotion, rollback and lineage for trained models.

Every check here runs at call time against the bytes on disk and in the registry; nothing is
cached, because a model's links (dataset digest, file sha256s, ONNX sha256) can break after it
was registered. MLflow is imported inside functions: it is slow to import.
"""
