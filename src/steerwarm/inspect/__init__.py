"""Stage 10, inspection of a vector: measures (cosines, probe accuracy, logit lens, projections), the inspection
report and the vector's card.

Invariant: every section says what data it rests on; a section without data says so and draws nothing.
"""
