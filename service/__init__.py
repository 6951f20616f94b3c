"""HTTP service over the detector: FastAPI, micro-batched onnxruntime, API keys, metrics, a web page.

Never imports torch. Start it with ``mimicry serve`` (or ``uvicorn --factory service.app:create_app``);
settings come from ``MIMICRY_*`` environment variables or a ``.env`` file (:mod:`mimicry.service.settings`).
"""
