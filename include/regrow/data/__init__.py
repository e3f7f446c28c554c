"""The data stages: landing files -> bronze -> silver -> training sets (and the simulator
that writes landing files for the built-in example domain)."""
