"""feature_platform: verifiable datasets, features and models as a Dagster asset graph."""

__version__ = "0.1.0"
