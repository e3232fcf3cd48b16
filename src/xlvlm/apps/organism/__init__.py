"""How the shipped model organism is built and measured (``xlvlm organism train|finetune|hallucinate|pope``).

The weights and how to load them stay in the library (:mod:`xlvlm.organism`); this package is
the code that made them: easy-VQA labels and drawings (:mod:`.data`, :mod:`.vision`), the
architecture (:mod:`.model`), training (:mod:`.train`, :mod:`.finetune`, :mod:`.hallucinate`),
the POPE-style benchmark (:mod:`.pope`) and the measurements (:mod:`.evaluate`, :mod:`.captions`).
"""
