"""Encoder effort levels (``sdc encode --effort``): how long the refining encoder runs.

No dependencies: the pipeline checks an effort without importing torch, which
only the refinement itself (:mod:`sdc.training.refine`) needs.
"""

# Encoder effort (sdc encode --effort) -> steps of the joint (ẑ and y) phase and
# of the y-only phase. The joint phase pays only with enough steps, so effort 2
# skips it; longer y-only runs use a smaller step (sdc.training.refine.step_size). The y-only phase
# is a tuple of run lengths, each run made from g_a's y and (with joint steps)
# from the joint phase's: every effort's runs include the lower efforts', and
# the encoder keeps the cheapest file, so an effort is never costlier than a
# lower one. The measurements behind these numbers: docs/experiments.md.
EFFORT_STEPS = {1: (0, ()), 2: (0, (20,)), 3: (20, (20,)), 4: (20, (20, 80))}
