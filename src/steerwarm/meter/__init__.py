"""Stage 6, the warmth meter: SocioT (relational-frame likelihood ratio), the p_warm classifier, summaries with
bootstrap errors, measurements of steered answers, and `meter compare` of several targets.

Invariant: one scorer reads every target of a comparison, so its numbers compare across targets.
"""
