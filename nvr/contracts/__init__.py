"""Contracts between the stages: frame slots, frame references and results, face results, letterbox
geometry, raw tensors, the resizer. Every stage may import these; they import no stage."""
