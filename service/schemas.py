"""Response bodies, as pydantic models so the OpenAPI document describes them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. unsupported_format, too_large, overloaded.")
    message: str = Field(description="What went wrong, for a person.")


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict:
    """A route's ``responses=``: each status documented with the error body."""
    return {s: {"model": ErrorBody} for s in statuses}


class VerdictOut(BaseModel):
    source: str = Field(description="The uploaded file's name, or its position.")
    score: float | None = Field(description="Calibrated probability of AI mimicry; null on error.")
    label: Literal["human", "uncertain", "ai-mimicry"] | None
    threshold: float | None = Field(description="Score at which the model says ai-mimicry.")
    model: str | None
    model_version: str | None
    error: str | None = None
    error_code: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)


class BatchOut(BaseModel):
    results: list[VerdictOut] = Field(description="One per uploaded file, in order; failures carry error_code.")


class ModelOut(BaseModel):
    name: str
    version: str
    backbone: str
    input_size: int
    thresholds: dict[str, Any]
    calibration: dict[str, Any]
    metrics_test: dict[str, Any] | None
    trained_on: str
    onnx_sha256: str


class ModelsOut(BaseModel):
    models: list[ModelOut]


class Health(BaseModel):
    status: str
    model: str | None = None
    model_version: str | None = None


class ExplainOut(BaseModel):
    verdict: VerdictOut
    heat_grid: list[list[float]] = Field(description="Mean heat per grid cell, rows top to bottom: > 0 is "
                                                     "evidence for ai-mimicry, < 0 for human.")
    heat_shape: list[int] = Field(description="Height and width of the full heat map (the overlay's size).")
    base_logit: float
    method: str
    grid: int
    window: float = Field(description="Window side as a fraction of the model's view.")
    overlay_png: str = Field(description="The image with the heat drawn over it, as a PNG data URL.")
