"""The ``pattern`` registry (ESPnet ClassChoices): ``pattern: delay`` + ``pattern_conf: {pad_id: 0}``.

Add a pattern by subclassing :class:`AbsPattern` (implement ``offsets``) and adding one line to
``pattern_choices``.
"""

from espnet2.train.class_choices import ClassChoices

from ualm_tk.patterns.abs_pattern import AbsPattern, PatternError
from ualm_tk.patterns.delay import DelayPattern
from ualm_tk.patterns.parallel import ParallelPattern

pattern_choices = ClassChoices(
    name="pattern",
    classes=dict(
        delay=DelayPattern,
        parallel=ParallelPattern,
    ),
    type_check=AbsPattern,
    default="delay",
)


def build_pattern(name: str = "delay", **conf) -> AbsPattern:
    """Instantiate a registered pattern by name (``ValueError`` listing the choices otherwise)."""
    return pattern_choices.get_class(name)(**conf)


__all__ = ["AbsPattern", "PatternError", "DelayPattern", "ParallelPattern", "pattern_choices", "build_pattern"]
