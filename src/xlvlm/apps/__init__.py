"""Applications built on the library: ``xlvlm demo`` and the model organism's training.

Nothing in the library imports from here (the layer contract in ``.importlinter`` checks it):
these modules use the library the way a user's script would.
"""
