"""The /api/play routes: requests checked here, model work done by the playground.

The playground (:mod:`xlvlm.serve.play`) owns the model: it is loaded once, serialises model
calls, and knows the run's samples and steering vectors. These routes are plain ``def``
functions, so FastAPI runs them on its thread pool and the event loop keeps serving the page
(and its busy state) while the model works. Without a playground (no ``--model``) they answer
503 with what to do.
"""

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from xlvlm.choices import MAX_ALPHA
from xlvlm.errors import XlvlmError

MAX_PROMPT_CHARS = 500
MAX_IDS = 512


class ImageChoice(BaseModel):
    """An image (a run sample's index or an upload's token) and a prompt."""
    sample: int | None = Field(default=None, ge=0)
    upload: str | None = Field(default=None, max_length=64)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class SteerRequest(ImageChoice):
    vector: str = Field(max_length=200)
    layer: str = Field(max_length=40)
    positions: str = Field(default="all", max_length=40)
    alpha: float = Field(ge=-MAX_ALPHA, le=MAX_ALPHA, allow_inf_nan=False)


class VectorRequest(BaseModel):
    source: list[str] = Field(min_length=1, max_length=MAX_IDS)
    target: list[str] = Field(min_length=1, max_length=MAX_IDS)
    layer: str = Field(max_length=40)


class NoPlayground(XlvlmError):
    """A play route called on a server started without --model."""


def add_play_routes(app, playground, run, uploads, thumbnail_png) -> None:
    """Add the /api/play routes to ``app``."""
    @app.exception_handler(NoPlayground)
    async def no_playground(request: Request, exc: NoPlayground):
        return JSONResponse({"error": str(exc)}, status_code=503)

    def ready():
        if playground is None:
            raise NoPlayground("this server was started without a model; restart it with "
                               "`xlvlm serve RUN_DIR --model M` to answer and steer")
        return playground

    def image_of(choice: ImageChoice):
        """The chosen image: an upload (a PIL image) or a run sample's image."""
        if (choice.sample is None) == (choice.upload is None):
            raise XlvlmError("choose one image: a sample of the run or an upload")
        if choice.upload is not None:
            return uploads.get(choice.upload)
        return ready().sample_image(choice.sample)

    @app.get("/api/play/options")
    def options():
        return ready().options()

    @app.get("/api/play/sample/{index}.png")
    def sample_thumbnail(index: int):
        return Response(thumbnail_png(ready().sample_image(index)), media_type="image/png")

    @app.post("/api/play/answer")
    def answer(request: ImageChoice):
        return ready().answer(image_of(request), request.prompt)

    @app.post("/api/play/steer")
    def steer(request: SteerRequest):
        return ready().steer(image_of(request), request.prompt, request.vector, request.layer, request.positions,
                             request.alpha)

    @app.post("/api/play/vector")
    def vector(request: VectorRequest):
        return ready().add_vector(request.source, request.target, request.layer)
