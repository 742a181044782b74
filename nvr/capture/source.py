"""Opening a camera's stream with PyAV: RTSP options, local files, timeouts, decoder threading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av
import av.container
import av.video.stream

from nvr.capture.spec import CameraSpec
from nvr.redact import redact_text


class SourceError(Exception):
    """The stream could not be opened or read; the message is one line with credentials masked."""


@dataclass(slots=True)
class OpenSource:
    container: av.container.InputContainer
    stream: av.video.stream.VideoStream
    is_file: bool

    def close(self) -> None:
        self.container.close()


def local_path(url: str) -> Path | None:
    """The file a `file://` URL or a plain path names; None for network URLs."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if "://" not in url:
        return Path(url)
    return None


def open_source(spec: CameraSpec) -> OpenSource:
    """Connect, read the stream headers and set up a threaded decoder, within `spec.open_timeout`."""
    path = local_path(spec.url)
    options: dict[str, str] = {}
    if spec.url.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = spec.transport
        options["allowed_media_types"] = "video"  # no audio RTP session to set up and drain
        # Probing the frame rate would read about a second of video on every (re)connect; the decoder
        # takes its parameters from the stream itself, so half a second of probing is plenty.
        options["analyzeduration"] = "500000"
        # The socket's own I/O timeout (microseconds), besides PyAV's per-read interrupt: a connection
        # that stays open but carries no media fails within read_timeout whatever the demuxer does inside
        # one read (keep-alives, RTCP, a UDP-to-TCP fallback).
        options["timeout"] = str(int(spec.read_timeout * 1_000_000))
        if spec.transport == "udp":
            options["buffer_size"] = str(4 << 20)  # a 1080p keyframe overflows the default socket buffer
            options["reorder_queue_size"] = "64"
    try:
        container = av.open(
            str(path) if path is not None else spec.url,
            options=options,
            timeout=(spec.open_timeout, spec.read_timeout),
        )
    except Exception as exc:  # FFmpeg, OS and parsing errors all mean "not now": retried later
        raise SourceError(describe_error(exc)) from None
    if not container.streams.video:
        container.close()
        raise SourceError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: decoding every frame is the dominant cost
    stream.codec_context.thread_count = spec.decoder_threads
    return OpenSource(container, stream, path is not None)


def describe_error(exc: BaseException) -> str:
    """One line for a log: the error's type and text, with any URL credentials masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_text(f"{type(exc).__name__}: {text}")
