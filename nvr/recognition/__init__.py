"""Face recognition: the face library (SQLite), the matcher, and the recognition stage of the daemon."""
