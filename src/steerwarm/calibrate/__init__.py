"""Stage 7, calibration: the layer to steer chosen by measured effect (layer), and the dial's map from warmth to a
raw coefficient fitted against a fine-tune's measured warmth (dial).

Invariant: warmth 0 is coefficient 0, and warmth +1 (-1) is where the steered model is as warm (cold) as the warm
(cold) fine-tune, by the meter.
"""
