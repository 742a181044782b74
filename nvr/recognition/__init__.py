"""Face recognition: the face library, matching, per-track identity, strangers and presence."""
