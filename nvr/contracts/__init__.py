"""Contracts between the stages: frame slots, frame references and results, tracked frames, identities,
face results, letterbox geometry, raw tensors, the resizer, the ArcFace alignment, array aliases. Every
stage may import these; they import no stage."""
