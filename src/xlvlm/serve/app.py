"""The web application of ``xlvlm serve``: FastAPI routes over a run folder and a playground.

Routes (all GET unless said; JSON under /api, errors as ``{"error": "..."}``; HTML elsewhere,
errors as a small escaped page):
  /                          the page (static/index.html: vanilla HTML, CSS and JS, no CDN)
  /static/{app.js,style.css} its script and style
  /report                    the static report of RUN_DIR (xlvlm.report's own page)
  /files/PATH                a figure or text file under RUN_DIR (no traversal, no links)
  /api/run                   the stages found
  /api/concepts, /api/shift, /api/sweeps    each stage's data (xlvlm.serve.runfolder)
  /api/stages/{learned,hallucination,calibration,evaluation}  the other stages' tabs (xlvlm.serve.stages)
  /api/patching              the patching results (xlvlm.serve.patching)
  /api/concepts/image?folder=&concept=&rank= a top sample's thumbnail (re-encoded PNG)
  /api/concepts/histogram?folder=&concept=   its activation histogram
  /api/predictions/files     the predictions files (.jsonl outside feature stores)
  /api/predictions?file=     rows of a predictions .jsonl
  POST /api/upload           raw image bytes -> {"token"}; /api/upload/TOKEN.png shows it back
  /api/play/...              the model side (xlvlm.serve.glue over xlvlm.serve.play.Playground)

Safety: only 127.0.0.1 unless the user binds elsewhere; the Host header must name that address
(a page on another site cannot reach the server through DNS rebinding); a strict
Content-Security-Policy on every response (scripts, styles, images and requests from this
origin only); files only under RUN_DIR. Model calls are ``def`` routes, which FastAPI runs on its
thread pool, off the event loop: the page stays responsive and shows a busy state while the
playground (which serialises model calls) works.
"""

import html
import io
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from xlvlm.errors import XlvlmError
from xlvlm.serve.runfolder import SERVED_TYPES, RefusedPath, RunFolder, thumbnail_png
from xlvlm.serve.uploads import MAX_UPLOAD_BYTES, UploadTooLarge, Uploads, decode_upload

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The report page carries its own inline <style> (and a policy of its own that allows no script).
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def _static(name: str) -> bytes:
    return resources.files("xlvlm.serve").joinpath("static", name).read_bytes()


def error_page(status: int, message: str) -> str:
    """A small HTML page naming what was wrong (escaped: messages may quote the request)."""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>xlvlm serve: error {status}</title>"
            f'<link rel="stylesheet" href="/static/style.css"></head><body><main class="error">'
            f"<h1>Error {status}</h1><p id=\"error-message\">{html.escape(message)}</p>"
            f'<p><a href="/">Back to the run</a></p></main></body></html>')


def create_app(run_dir, playground=None, image_roots=(), host: str = "127.0.0.1"):
    """The FastAPI application for ``run_dir``. ``playground`` (a :class:`xlvlm.serve.play.Playground`
    on the same folder, or None: browse only) answers the /api/play routes; ``image_roots``:
    folders besides RUN_DIR that the run's sample images may be shown from (the playground's own
    roots when it is given)."""
    from xlvlm.serve.glue import add_play_routes

    run = RunFolder(run_dir, playground.image_roots if playground is not None else image_roots)
    uploads = Uploads()
    app = FastAPI(title="xlvlm serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.run, app.state.uploads, app.state.playground = run, uploads, playground
    _add_guard(app, host)
    _add_error_pages(app)
    _add_page_routes(app, run)
    _add_browse_routes(app, run, playground is not None)
    _add_upload_routes(app, uploads)
    add_play_routes(app, playground, uploads, thumbnail_png)
    return app


def _error(request: Request, status: int, message: str):
    """JSON for the page's own calls (/api/...), the error page for anything else."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(error_page(status, message), status_code=status)


def _add_guard(app, host: str) -> None:
    """Every request: the Host and Origin checks; every response: the security headers."""
    # On this machine only, a request must name it: a page of another site that resolves its own
    # name to 127.0.0.1 (DNS rebinding) sends its own name. Bound elsewhere on purpose (--host),
    # the server answers whatever name the other machines use for it.
    allowed_hosts = {host, "localhost", "127.0.0.1", "[::1]"} if host in LOOPBACK else None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        name = request.headers.get("host", "")
        hostname = name.rsplit(":", 1)[0] if not name.endswith("]") else name
        origin = request.headers.get("origin")
        if allowed_hosts is not None and hostname not in allowed_hosts:
            response = HTMLResponse(error_page(400, "unexpected Host header; open the address xlvlm serve printed"),
                                    status_code=400)
        elif request.method == "POST" and origin is not None and origin.split("://", 1)[-1] != name:
            # A form or script of another site posting here (the browser names that site).
            response = _error(request, 403, "refused: a request from another site's page")
        else:
            response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response


def _add_error_pages(app) -> None:
    """Each kind of bad request as its status and a one-line reason."""

    @app.exception_handler(RefusedPath)
    async def refused(request: Request, exc: RefusedPath):
        return _error(request, 403, f"refused: {exc}")

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, exc: UploadTooLarge):
        return _error(request, 413, str(exc))

    @app.exception_handler(XlvlmError)
    async def bad_input(request: Request, exc: XlvlmError):
        return _error(request, 400, str(exc))

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return _error(request, 404, f"nothing at {request.url.path[:200]}")

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc):
        return _error(request, 405, f"{request.method} is not allowed on {request.url.path[:200]}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(request, 400, f"bad request: {where or 'input'}: {first.get('msg', 'invalid')}")


def _add_page_routes(app, run: RunFolder) -> None:
    """The page, its script and style, the static report, and the run's figures and text files."""

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            raise RefusedPath(f"{name[:80]!r}: not a file of the page")
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/report", response_class=HTMLResponse)
    def report():
        from xlvlm.report.html import report_page

        return HTMLResponse(report_page(run.root), headers={"Content-Security-Policy": REPORT_CSP})

    @app.get("/files/{path:path}")
    def files(path: str):
        file = run.file(path)
        if file.suffix.lower() == ".png":
            run.check_figure(file)
        return Response(file.read_bytes(), media_type=SERVED_TYPES[file.suffix.lower()])


def _add_browse_routes(app, run: RunFolder, play: bool) -> None:
    """The run's stages as JSON (xlvlm.serve.runfolder)."""

    @app.get("/api/run")
    def overview():
        return {**run.overview(), "play": play}

    @app.get("/api/concepts")
    def concepts():
        return run.concepts()

    @app.get("/api/concepts/image")
    def concept_image(folder: str, concept: int, rank: int):
        return Response(run.sample_image(folder, concept, rank), media_type="image/png")

    @app.get("/api/concepts/histogram")
    def histogram(folder: str, concept: int):
        return run.histogram(folder, concept)

    @app.get("/api/shift")
    def shifts():
        return run.shifts()

    @app.get("/api/sweeps")
    def sweeps():
        return run.sweeps()

    @app.get("/api/stages/{tab}")
    def stage_tab(tab: str):
        from xlvlm.serve.stages import tab_sections

        return tab_sections(run, tab)
    @app.get("/api/patching")
    def patching():
        from xlvlm.serve.patching import patching_results

        return patching_results(run)

    @app.get("/api/predictions/files")
    def prediction_files():
        return run.prediction_files()

    @app.get("/api/predictions")
    def predictions(file: str):
        return run.predictions(file)


def _add_upload_routes(app, uploads: Uploads) -> None:
    """POST /api/upload (the raw bytes, read up to the limit) and the upload shown back."""

    @app.post("/api/upload")
    async def upload(request: Request):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"upload of {int(declared):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                raise UploadTooLarge(f"upload over the limit of {MAX_UPLOAD_BYTES:,} bytes; choose a smaller image")
        image = await run_in_threadpool(decode_upload, bytes(data))
        return {"token": uploads.add(image), "width": image.width, "height": image.height}

    @app.get("/api/upload/{token}.png")
    def uploaded(token: str):
        buffer = io.BytesIO()
        image = uploads.get(token).copy()
        image.thumbnail((320, 320))
        image.save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")


def listen_socket(host: str, port: int):
    """A socket bound to ``host``:``port``, taken before anything slow (a model load) starts, so
    that a port in use is one line at once; :func:`serve` then listens on it."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise XlvlmError(f"--host {host}: not an address to listen on ({exc.strerror or exc}); use 127.0.0.1") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise XlvlmError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); another program "
                         f"(another xlvlm serve?) uses it, choose another --port") from None
    return sock


def serve(run_dir, playground=None, image_roots=(), host: str = "127.0.0.1", port: int = 8000, sock=None) -> None:
    """Run the server until interrupted (uvicorn, one process: one model in memory), on ``sock``
    (from :func:`listen_socket`) when given, else on a socket bound to ``host``:``port`` now."""
    import uvicorn

    app = create_app(run_dir, playground, image_roots, host=host)
    sock = sock if sock is not None else listen_socket(host, port)
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
