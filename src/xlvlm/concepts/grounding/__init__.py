"""Grounding concepts: what each concept means in words, images and image regions.

text.py: words through the model's own readout (lm_head, the logit lens). images.py: the most-
activating samples (MAS). patches.py: where in an image a concept fires. scores.py: CLIPScore
and text similarity of the grounded words (they need an encoder). The modules are imported on
their own: importing this package loads none of them.
"""
