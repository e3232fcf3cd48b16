"""The /api/play routes: requests checked here, model work done by the playground.

The playground (:class:`xlvlm.serve.play.Playground`) owns the model: loaded once, every model
call on its one worker thread, run paths confined to RUN_DIR (and the image roots the user
gave). These routes are plain ``def`` functions, so FastAPI runs them on its thread pool: the
event loop keeps serving the page (and its busy state) while a request waits for the worker.
Without a playground (no ``--model``) they answer 503 saying how to start one.

Routes:
  GET  /api/play/options                 model, layers, positions, methods, stores, vectors, limits
  GET  /api/play/samples?store=&answer=  the first samples of a store (id, prompt, answer, image_ok)
  GET  /api/play/sample.png?store=&id=   a sample's image as a thumbnail
  POST /api/play/answer   {image, prompt}                           -> answer, top-k, concepts
  POST /api/play/steer    {image, prompt, vector, layer, positions, alpha} -> steered and unsteered
  POST /api/play/vector   {source, target, method}                  -> the computed vector
where ``image`` is ``{"store", "id"}`` (a run sample) or ``{"upload": TOKEN}`` (POST /api/upload).
"""

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from xlvlm.errors import XlvlmError
from xlvlm.serve.play import MAX_NAME_CHARS, MAX_PROMPT_CHARS, PAGE_NEW_TOKENS, PAGE_TOP_K, SAMPLES_SHOWN
from xlvlm.steer.settings import MAX_ALPHA


class ImageRef(BaseModel):
    """A run sample (store and id) or an upload (its token): exactly one of the two."""
    store: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    id: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    upload: str | None = Field(default=None, max_length=64)


class AnswerRequest(BaseModel):
    image: ImageRef
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class SteerRequest(AnswerRequest):
    vector: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    layer: str | None = Field(default=None, max_length=40)
    positions: str = Field(default="all", max_length=40)
    alpha: float = Field(ge=-MAX_ALPHA, le=MAX_ALPHA, allow_inf_nan=False)


class SampleSet(BaseModel):
    """The rows of a store, all of them or those whose reference answer is ``answer``."""
    store: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    answer: str | None = Field(default=None, max_length=200)


class VectorRequest(BaseModel):
    source: SampleSet
    target: SampleSet
    method: str = Field(default="mean-diff", max_length=40)  # the playground checks the name


class NoPlayground(XlvlmError):
    """A play route called on a server started without --model."""


def _sample_set(spec: SampleSet):
    """A set as the playground takes it: a store name, or {store, answer}."""
    return spec.store if spec.answer in (None, "") else {"store": spec.store, "answer": spec.answer}


def add_play_routes(app, playground, uploads, thumbnail_png) -> None:
    """Add the /api/play routes to ``app``; ``playground`` may be None (browse only)."""

    @app.exception_handler(NoPlayground)
    async def no_playground(request: Request, exc: NoPlayground):
        return JSONResponse({"error": str(exc)}, status_code=503)

    def ready():
        if playground is None:
            raise NoPlayground("this server was started without a model; restart it with "
                               "`xlvlm serve RUN_DIR --model M` to answer and steer")
        return playground

    def image_of(ref: ImageRef):
        """What the playground takes: a run sample {store, id} or an uploaded image."""
        if ref.upload is not None:
            if ref.store is not None or ref.id is not None:
                raise XlvlmError("image: give a run sample (store and id) or an upload, not both")
            return uploads.get(ref.upload)
        if ref.store is None or ref.id is None:
            raise XlvlmError("image: choose a sample of the run (store and id) or upload an image")
        return {"store": ref.store, "id": ref.id}

    @app.get("/api/play/options")
    def options():
        play = ready()
        return {**play.info(), "stores": [s for s in play.stores() if "error" not in s], "vectors": play.vectors(),
                "pending": play.pending}

    @app.get("/api/play/samples")
    def samples(store: str, answer: str | None = None):
        return ready().samples(store, answer=answer or None, limit=SAMPLES_SHOWN)

    @app.get("/api/play/sample.png")
    def sample_thumbnail(store: str, id: str):
        return Response(thumbnail_png(ready().sample_image_path(store, id)), media_type="image/png")

    @app.post("/api/play/answer")
    def answer(request: AnswerRequest):
        return ready().answer(image_of(request.image), request.prompt, top_k=PAGE_TOP_K,
                              max_new_tokens=PAGE_NEW_TOKENS)

    @app.post("/api/play/steer")
    def steer(request: SteerRequest):
        return ready().steer(image_of(request.image), request.prompt, vector=request.vector, alpha=request.alpha,
                             layer=request.layer or None, positions=request.positions, top_k=PAGE_TOP_K,
                             max_new_tokens=PAGE_NEW_TOKENS)

    @app.post("/api/play/vector")
    def vector(request: VectorRequest):
        return ready().compute_vector(_sample_set(request.source), _sample_set(request.target), method=request.method)
