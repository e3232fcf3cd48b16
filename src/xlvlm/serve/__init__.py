"""``xlvlm serve RUN_DIR``: a local explorer for a run folder.

:mod:`xlvlm.serve.play` is the model side (one model, one worker thread, plain dicts out); it
needs no web framework, so it is usable from a notebook as well. The server
(:mod:`xlvlm.serve.app` and :mod:`xlvlm.serve.glue`, FastAPI + uvicorn: the ``serve`` extra)
reads the run with :mod:`xlvlm.serve.runfolder` and is imported only when a server is made.
"""
