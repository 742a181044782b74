"""The detection stage: fair scheduling across cameras, frames in flight, postprocess, zones."""
