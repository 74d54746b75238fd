"""What monitoring asks of the lane: Prometheus metrics and a liveness check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from checkout_node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from checkout_node.web.deps import CurrentLane, Services, scraper

router = APIRouter()


@router.get(
    "/metrics", tags=["monitoring"], response_class=Response, dependencies=[Depends(scraper)]
)
def prometheus(services: Services) -> Response:
    """Prometheus text format; a scraper with a metrics token (or this computer)."""
    return Response(services.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)


# Open to anyone (no dependency checks who): a load balancer or the kiosk's start-up script
# asks before it holds any key. No docstring: it would change the published schema.
@router.get("/healthz", tags=["health"])
def healthz(lane: CurrentLane) -> dict[str, Any]:
    return {"status": "ok", "lane_id": lane.lane_id, "model_version": lane.model_version}
