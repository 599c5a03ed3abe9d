"""Training domain: load verified splits, train, export ONNX, evaluate, rerun and replay.

Pure Python (no Dagster, no MLflow); sklearn, skl2onnx and onnxruntime are imported inside the
functions that need them so importing this package stays cheap.
"""
