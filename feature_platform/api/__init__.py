"""The platform's HTTP API (``fp api serve``): thin routes over the same domain functions and Dagster jobs as ``fp``.

``tokens`` (the token store, no web framework) is what ``fp api token`` uses; ``app`` builds the FastAPI
application, ``auth`` checks bearer tokens and scopes, ``errors`` renders every error as JSON.
"""
