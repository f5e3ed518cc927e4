"""The server stack's own ceiling: the same FastAPI + uvicorn, one route, a canned JSON body."""

from __future__ import annotations

import sys

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

BODY = orjson.dumps({"success": True, "task_id": "00000000-0000-0000-0000-000000000000",
                     "trace_id": "00000000-0000-0000-0000-000000000000", "created": 0,
                     "data": [{"revised_prompt": "x", "url": "http://127.0.0.1/files/x.png"}]})
app = FastAPI()


@app.post("/v1/images/generations")
async def generations(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
