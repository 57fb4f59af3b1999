"""The naive baseline of bench/serving.py: a FastAPI app that calls a transformers `pipeline` per request.

What a first version of a model API often looks like: one pipeline loaded at startup, a plain `def` endpoint
(FastAPI runs it in its thread pool, so concurrent requests call the pipeline concurrently), no batching,
no auth, no metering.

    python bench/serving_naive.py MODEL_DIR --port 8001
    curl -s localhost:8001/predict -d '{"text": "a gorgeous film"}'   # [{"label": "1", "score": 0.98}]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from transformers import pipeline  # noqa: E402


class PredictRequest(BaseModel):
    text: str


def create_app(model_dir: str) -> FastAPI:
    classifier = pipeline("text-classification", model=model_dir, trust_remote_code=True, device="cpu")
    app = FastAPI(title="naive pipeline server")

    @app.post("/predict")
    def predict(body: PredictRequest) -> list[dict]:
        return [{"label": p["label"], "score": float(p["score"])}
                for p in classifier(body.text, truncation=True, max_length=128)]

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
