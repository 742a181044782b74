"""The event stage: face tracks, event lifecycle, snapshots, and the sinks that deliver the events."""
