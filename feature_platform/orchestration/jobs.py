"""Jobs: the nightly refresh and the archive step that follows every refresh run."""

from __future__ import annotations

import dagster as dg

from feature_platform.orchestration.assets import REFRESH_ASSETS, archive_artifacts

refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.assets(*REFRESH_ASSETS),
    description="ingest_sources → generate_candidate → quality_gate → publish_dataset → notify_stakeholders",
    tags={"team": "ml-platform", "owner": "evaluation"},
)

archive_job = dg.define_asset_job(
    "archive_job",
    selection=dg.AssetSelection.assets(archive_artifacts),
    description="archive_artifacts: runs after every refresh run, succeeded or failed (all_done).",
)
