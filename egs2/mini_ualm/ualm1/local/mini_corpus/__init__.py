"""The truthfully captioned mini corpus of the mini_ualm recipe (stage 1, local/data.sh).

Modules: ``vocab`` (generation parameters and their words), ``inventory`` (installed real
recordings with labels), ``plan`` (seeded plan, splits, held-out material), ``render`` (one
event -> audio), ``compose`` (one clip -> checked master WAV), ``describe`` (captions, rich
captions), ``qa`` (questions/answers), ``text_problems`` (text-only problems), ``stats``
(corpus_stats.md) and ``build`` (the whole corpus).
"""
