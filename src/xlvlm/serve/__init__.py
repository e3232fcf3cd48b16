"""``xlvlm serve``: a local web explorer of a run folder, with a playground to answer and steer.

The server (:mod:`xlvlm.serve.app`, FastAPI + uvicorn: the ``serve`` extra) is imported only
when a server is made, so that importing xlvlm needs neither.
"""
