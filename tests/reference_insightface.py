"""An independent SCRFD pipeline in the manner of insightface's `SCRFD.detect`, to check `nvr eval` against.

Nothing from `nvr` is used: Pillow decodes, ONNX Runtime runs the model, and the resize, decode and NMS
are written here, plainly, from the published algorithm:
- the image is scaled to fit the square input with its aspect kept, placed top-left, zero padded; the
  resize is OpenCV's INTER_LINEAR as insightface calls it (half-pixel centres, two taps, no antialiasing
  on downscaling), re-implemented in numpy; `resize="pillow"` uses Pillow's bilinear instead (which
  does antialias), to show how much the resampler alone moves the AP;
- input (pixel - 127.5) / 128, RGB, NCHW;
- per stride s in (8, 16, 32): anchor centres (x·s, y·s), two per cell, row-major; boxes are
  (cx - l·s, cy - t·s, cx + r·s, cy + b·s); scores >= threshold survive;
- coordinates are divided by the single scale factor resized_height / image_height (as insightface does);
- greedy NMS at IoU 0.4 with widths measured as x2 - x1 + 1.
Run it as a script to print its WIDER FACE predictions' AP (scored by nvr's evaluator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

STRIDES = (8, 16, 32)
NMS_IOU = 0.4


class ReferenceScrfd:
    def __init__(
        self, model: Path, size: int = 640, score_threshold: float = 0.02, resize: str = "opencv"
    ) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.size = size
        self.threshold = score_threshold
        self.resize = resize

    def detect(self, path: Path) -> npt.NDArray[np.float64]:
        """(N, 5) x1, y1, x2, y2, score in original pixels, best first."""
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        width, height = rgb.size
        if height / width > 1.0:
            new_h, new_w = self.size, int(self.size / (height / width))
        else:
            new_w, new_h = self.size, int(self.size * (height / width))
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        if self.resize == "pillow":
            resized = np.asarray(rgb.resize((new_w, new_h), Image.Resampling.BILINEAR), np.float32)
        else:
            resized = _resize_linear(np.asarray(rgb, np.float32), new_w, new_h)
        canvas[:new_h, :new_w] = resized
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = [np.asarray(o, np.float32) for o in self.session.run(None, {self.input_name: blob})]
        candidates = []
        for stride in STRIDES:
            cells = (self.size // stride) ** 2 * 2
            scores, deltas = _pick(outputs, cells, 1), _pick(outputs, cells, 4) * stride
            grid = np.stack(np.meshgrid(np.arange(self.size // stride), np.arange(self.size // stride)), -1)
            centres = np.repeat(grid.reshape(-1, 2) * stride, 2, axis=0).astype(np.float32)
            boxes = np.hstack([centres - deltas[:, :2], centres + deltas[:, 2:]])
            keep = scores[:, 0] >= self.threshold
            candidates.append(np.hstack([boxes[keep], scores[keep]]))
        found = np.vstack(candidates).astype(np.float64)
        found[:, :4] /= new_h / height
        order = np.argsort(-found[:, 4], kind="stable")
        return found[order][_greedy_nms(found[order])]


def _resize_linear(image: npt.NDArray[np.float32], new_w: int, new_h: int) -> npt.NDArray[np.float32]:
    """OpenCV INTER_LINEAR: each output pixel blends the two nearest source pixels per axis."""

    def taps(
        n_out: int, n_in: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        centre = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        low = np.minimum(np.floor(centre).astype(np.intp), n_in - 1)
        return low, np.minimum(low + 1, n_in - 1), (centre - low).astype(np.float32)

    y0, y1, ty = taps(new_h, image.shape[0])
    x0, x1, tx = taps(new_w, image.shape[1])
    rows = image[y0] * (1 - ty)[:, None, None] + image[y1] * ty[:, None, None]
    out = rows[:, x0] * (1 - tx)[None, :, None] + rows[:, x1] * tx[None, :, None]
    return np.rint(out)  # OpenCV returns uint8 pixels


def _pick(outputs: list[npt.NDArray[np.float32]], rows: int, width: int) -> npt.NDArray[np.float32]:
    for output in outputs:
        flat = output.reshape(-1, output.shape[-1])
        if flat.shape == (rows, width):
            return flat
    raise ValueError(f"no ({rows}, {width}) output among {[o.shape for o in outputs]}")


def _greedy_nms(dets: npt.NDArray[np.float64]) -> list[int]:
    x1, y1, x2, y2 = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.arange(len(dets))
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= NMS_IOU]
    return keep


def reference_predictions(
    model: Path, images_dir: Path, resize: str = "opencv"
) -> dict[str, npt.NDArray[np.float64]]:
    """WIDER-style predictions {image name: (N, 5) x, y, w, h, score} for every <event>/<image>.jpg."""
    detector = ReferenceScrfd(model, resize=resize)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for path in sorted(images_dir.glob("*/*.jpg")):
        dets = detector.detect(path)
        dets[:, 2:4] -= dets[:, :2]
        out[path.stem] = dets
    return out


if __name__ == "__main__":
    import sys

    from nvr.evaluation.groundtruth import load_ground_truth
    from nvr.evaluation.protocol import evaluate

    model_path, images, gt = (Path(a) for a in sys.argv[1:4])
    result = evaluate(load_ground_truth(gt), reference_predictions(model_path, images))
    print(" ".join(f"{s} {r.ap * 100:.2f}" for s, r in result.settings.items()))
