"""Model management tooling: the catalogue, the model store, verification against the float model."""
