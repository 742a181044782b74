"""The tracking stage: per-frame faces become face tracks (one person in view = one track)."""
