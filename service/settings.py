"""Service settings: environment variables prefixed ``MIMICRY_``, or a ``.env`` file.

Every field can be set as ``MIMICRY_<FIELD>`` (for example ``MIMICRY_MODEL_DIR=/srv/models/v3``,
``MIMICRY_BATCH_MAX_SIZE=32``); ``mimicry serve`` options override both. Models are given as a
directory or a name (``default``, ``style-encoder``), found by
:func:`mimicry.detector.locations.resolve_model_dir`; the key database and the registry default to
the per-user data folder (:func:`mimicry.detector.locations.data_dir`, ``$MIMICRY_HOME``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mimicry.detector.locations import DEFAULT_ENCODER, DEFAULT_MODEL, data_dir

KEYS_FILE = "keys.sqlite3"


class Settings(BaseSettings):
    """Everything an operator can tune. Byte and pixel limits are checked before decoding."""

    model_config = SettingsConfigDict(env_prefix="MIMICRY_", env_file=".env", extra="ignore")

    # str as well as Path: a name ("default") is looked up, a path is used as given.
    model_dir: Path | str = Field(DEFAULT_MODEL, description="Detector: a model directory (model.onnx + model.json), "
                                                             "or a name ($MIMICRY_MODELS/<name>, else bundled).")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    # Limits
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest request body; more is 413.")
    max_pixels: int = Field(40_000_000, ge=1, description="Largest image in pixels; more is 413.")
    max_batch_items: int = Field(32, ge=1, description="Most images in one /v1/detect/batch request.")
    request_timeout_s: float = Field(30.0, gt=0, description="Per-request deadline; past it the answer is 504.")

    # Cost per request (service/work.py): what an image costs is the pixels its decode makes (from its header)
    max_request_pixels: int = Field(160_000_000, ge=1, description="Largest decode cost of one request, all its "
                                                                  "images together, in pixels; more is 413.")
    large_image_pixels: int = Field(8_000_000, ge=1, description="Images that decode to more pixels than this go "
                                                                 "to the large-image lane.")
    large_decode_workers: int = Field(1, ge=1, description="Threads of the large-image lane (each holds one large "
                                                           "decode in memory).")
    large_queue_max: int = Field(64, ge=1, description="Large images waiting for their lane; beyond it 503.")
    explain_chunk: int = Field(8, ge=1, description="Heatmap windows sent to the model queue at a time, so that "
                                                     "detections waiting behind a heatmap wait for one chunk only.")
    max_explain_grid: int = Field(16, ge=2, le=32, description="Largest heatmap grid (grid**2 + 1 forward passes).")

    # Micro-batching
    batch_max_size: int = Field(4, ge=1, description="Most images per onnxruntime call (1 turns batching off). "
                                                      "4 was best on a 2-core CPU (BENCHMARKS.md); raise it on a GPU.")
    batch_max_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits to fill once it has one image.")
    queue_max: int = Field(256, ge=1, description="Images waiting for the model; beyond it the answer is 503.")
    decode_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1,
                                description="Threads that decode uploads off the event loop.")
    intra_op_threads: int | None = Field(None, ge=1, description="onnxruntime threads (default: all cores).")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 when the queue is full.")
    max_concurrent_explain: int = Field(2, ge=1, description="Heatmaps computed at once (each is a batch of "
                                                              "grid**2 + 1 images); more get 503.")

    # Connections (service/server.py): defaults meant for running behind a proxy or load balancer.
    keep_alive_timeout_s: float = Field(75.0, gt=0, description="Idle keep-alive connections (and new ones that "
                                                                 "send nothing) are closed after this; keep it "
                                                                 "above the proxy's idle timeout (often 60 s).")
    header_timeout_s: float = Field(10.0, gt=0, description="A request whose headers are not complete this long "
                                                             "after its first byte is answered 408 and closed.")
    max_connections: int = Field(1000, ge=1, description="Open connections per process; past it requests get 503. "
                                                          "Lowered to fit the open-file limit, which `mimicry "
                                                          "serve` raises towards the hard limit at start.")
    backlog: int = Field(2048, ge=1, description="Listen backlog: connections the kernel queues before they are "
                                                  "accepted (capped by net.core.somaxconn).")

    # Auth
    keys_db: Path = Field(default_factory=lambda: data_dir() / KEYS_FILE,
                          description="SQLite file of hashed API keys (created by `mimicry keys create`).")
    require_key_for_detect: bool = Field(False, description="Also require an API key for the detect endpoints.")

    # The artist style registry
    style_encoder_dir: Path | str | None = Field(DEFAULT_ENCODER,
                                                 description="Style encoder: a directory or a name, as model_dir; "
                                                             "empty turns attribution off.")
    # str as well as Path: a postgresql:// URL must not go through Path, which would fold its '//'.
    registry: Path | str | None = Field(None, description="Registry: a SQLite file, or a postgresql://user@host/db URL "
                                                          "that several replicas share (default: $MIMICRY_REGISTRY "
                                                          "or registry.sqlite3 in the per-user data dir).")
    artists_top_k: int = Field(3, ge=1, le=20, description="Enrolled artists reported with each verdict.")
    show_artists_to_anonymous: bool = Field(False, description="Name the closest enrolled artists (names and "
                                                               "similarities only) in verdicts for callers without "
                                                               "a key; detect keys always see them, enrol and admin "
                                                               "keys also the nearest works.")
    max_enrol_items: int = Field(64, ge=1, description="Most images in one POST /v1/artists/{name}/works.")
    max_concurrent_enrol: int = Field(2, ge=1, description="Enrolments running or waiting (they run one at a "
                                                            "time, on a thread of their own); more get 503.")
    enrol_timeout_s: float = Field(120.0, gt=0, description="Deadline of one enrolment, waiting included; past it "
                                                             "nothing is added and the answer is 504.")

    # Uploads are kept only when the operator asks.
    keep_uploads_dir: Path | None = Field(None, description="If set, uploads are stored here by sha256.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.batch_max_size > self.queue_max:
            raise ValueError(f"batch_max_size ({self.batch_max_size}) must not exceed queue_max ({self.queue_max})")
        return self
