"""`nvr models verify`: the Hailo path against the float ONNX model, image by image.

Both detectors see the same letterboxed input (the one resizer), so any difference comes from the
device's quantized network and our dequantization. Faces are paired one-to-one by IoU (best pairs first,
IoU >= 0.5); for each pair the box IoU and the mean landmark distance in source pixels are reported,
and faces of one side without a partner are "missed" (float only) or "extra" (Hailo only). Near the
score threshold a face may fall on either side by quantization alone, so the scores of unpaired faces
are kept to show whether that is what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nvr.contracts.arrays import Float64Array, RgbImage
from nvr.contracts.faces import Detections

MATCH_IOU = 0.5
# What "consistent" means for the verdict. 8-bit outputs move boxes and landmarks by a fraction of a
# pixel to a pixel or two; wrong dequantization constants or a different model move them by several
# (SCRFD-500M against 2.5G: mean IoU 0.92, landmarks off by 3-7 % of the face size). A real device also
# quantizes inside the network, so the bounds leave room beyond output rounding alone.
CONSISTENT_MATCH_RATE = 0.9
CONSISTENT_MEAN_IOU = 0.93
CONSISTENT_LANDMARK_ERROR = 0.02  # mean landmark error as a fraction of the face size (sqrt of box area)


class Detector(Protocol):
    def detect(self, image: RgbImage) -> Detections: ...


@dataclass(frozen=True, slots=True)
class ImageComparison:
    image: str
    reference_faces: int
    hailo_faces: int
    ious: tuple[float, ...]  # per matched pair
    landmark_errors: tuple[float, ...]  # per matched pair: mean point distance, source pixels
    relative_landmark_errors: tuple[float, ...]  # the same divided by the float face's size
    missed_scores: tuple[float, ...]  # float-model faces without a Hailo partner
    extra_scores: tuple[float, ...]  # Hailo faces without a float partner

    @property
    def matched(self) -> int:
        return len(self.ious)


@dataclass(slots=True)
class VerifyReport:
    images: list[ImageComparison] = field(default_factory=list)

    def all_of(self, attribute: str) -> list[float]:
        return [v for image in self.images for v in getattr(image, attribute)]

    @property
    def reference_faces(self) -> int:
        return sum(i.reference_faces for i in self.images)

    @property
    def hailo_faces(self) -> int:
        return sum(i.hailo_faces for i in self.images)

    @property
    def matched(self) -> int:
        return sum(i.matched for i in self.images)

    @property
    def missed_scores(self) -> tuple[float, ...]:
        return tuple(self.all_of("missed_scores"))

    @property
    def extra_scores(self) -> tuple[float, ...]:
        return tuple(self.all_of("extra_scores"))

    @property
    def ious(self) -> list[float]:
        return self.all_of("ious")

    @property
    def landmark_errors(self) -> list[float]:
        return self.all_of("landmark_errors")

    @property
    def relative_landmark_errors(self) -> list[float]:
        return self.all_of("relative_landmark_errors")

    @property
    def consistent(self) -> bool:
        """Whether the Hailo results agree with the float model as far as quantization explains."""
        faces = max(self.reference_faces, self.hailo_faces)
        if faces == 0:
            return True
        return (
            self.matched / faces >= CONSISTENT_MATCH_RATE
            and bool(self.ious)
            and float(np.mean(self.ious)) >= CONSISTENT_MEAN_IOU
            and float(np.mean(self.relative_landmark_errors)) <= CONSISTENT_LANDMARK_ERROR
        )


def pairwise_iou(a: Float64Array, b: Float64Array) -> Float64Array:
    """(len(a), len(b)) IoU of corner boxes (continuous coordinates)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def compare(name: str, reference: Detections, hailo: Detections) -> ImageComparison:
    ref_boxes = reference.boxes.astype(np.float64)
    hailo_boxes = hailo.boxes.astype(np.float64)
    iou = pairwise_iou(ref_boxes, hailo_boxes)
    # Greedy one-to-one pairing, best IoU first (a handful of faces: the loop is over pairs kept).
    pairs: list[tuple[int, int, float]] = []
    if iou.size:
        order = np.argsort(-iou, axis=None, kind="stable")
        used_ref: set[int] = set()
        used_hailo: set[int] = set()
        for flat in order.tolist():
            r, h = divmod(flat, iou.shape[1])
            value = float(iou[r, h])
            if value < MATCH_IOU:
                break
            if r in used_ref or h in used_hailo:
                continue
            used_ref.add(r)
            used_hailo.add(h)
            pairs.append((r, h, value))
    pairs.sort()
    ref_idx = np.array([p[0] for p in pairs], np.intp)
    hailo_idx = np.array([p[1] for p in pairs], np.intp)
    distances = np.linalg.norm(
        reference.landmarks[ref_idx].astype(np.float64) - hailo.landmarks[hailo_idx].astype(np.float64),
        axis=-1,
    )
    errors = distances.mean(axis=1) if pairs else np.zeros(0)
    sides = ref_boxes[ref_idx, 2:] - ref_boxes[ref_idx, :2]
    face_size = np.sqrt(np.maximum(sides[:, 0] * sides[:, 1], 1.0))
    missed = np.setdiff1d(np.arange(len(reference)), ref_idx)
    extra = np.setdiff1d(np.arange(len(hailo)), hailo_idx)
    return ImageComparison(
        image=name,
        reference_faces=len(reference),
        hailo_faces=len(hailo),
        ious=tuple(p[2] for p in pairs),
        landmark_errors=tuple(errors.tolist()),
        relative_landmark_errors=tuple((errors / face_size).tolist()),
        missed_scores=tuple(reference.scores[missed].tolist()),
        extra_scores=tuple(hailo.scores[extra].tolist()),
    )


def verify(images: Iterable[tuple[str, RgbImage]], reference: Detector, hailo: Detector) -> VerifyReport:
    """Run both detectors over `images` and compare them image by image."""
    report = VerifyReport()
    for name, rgb in images:
        report.images.append(compare(name, reference.detect(rgb), hailo.detect(rgb)))
    return report


def image_files(paths: Iterable[Path]) -> list[Path]:
    """The image files named, with folders expanded to the images directly inside them."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        else:
            found.append(path)
    return found


def _stats(values: list[float] | tuple[float, ...]) -> tuple[float, float, float] | None:
    return (float(np.mean(values)), float(np.min(values)), float(np.max(values))) if values else None


def report_json(report: VerifyReport, hef: Path, onnx: Path) -> dict[str, Any]:
    def summary(item: ImageComparison | VerifyReport) -> dict[str, Any]:
        ious, errors = _stats(item.ious), _stats(item.landmark_errors)
        relative = _stats(item.relative_landmark_errors)
        missed, extra = item.missed_scores, item.extra_scores
        return {
            "float_faces": item.reference_faces,
            "hailo_faces": item.hailo_faces,
            "matched": item.matched,
            "box_iou_mean": ious[0] if ious else None,
            "box_iou_min": ious[1] if ious else None,
            "landmark_error_px_mean": errors[0] if errors else None,
            "landmark_error_px_max": errors[2] if errors else None,
            "landmark_error_relative_mean": relative[0] if relative else None,
            "missed": len(missed),
            "extra": len(extra),
            "missed_scores": [round(s, 4) for s in missed],
            "extra_scores": [round(s, 4) for s in extra],
        }

    return {
        "hef": str(hef),
        "onnx": str(onnx),
        "consistent": report.consistent,
        "overall": {"images": len(report.images), **summary(report)},
        "images": [{"image": image.image, **summary(image)} for image in report.images],
    }


def report_text(report: VerifyReport, hef: Path, onnx: Path) -> str:
    lines = [
        f"{hef.name} on the Hailo vs {onnx.name} (float, CPU)",
        f"{'image':<32} {'float':>5} {'hailo':>5} {'match':>5}  {'IoU mean/min':<13} {'landmarks px':<13} "
        f"{'missed':>6} {'extra':>5}",
    ]
    for image in report.images:
        ious, errors = _stats(image.ious), _stats(image.landmark_errors)
        iou_text = f"{ious[0]:.3f}/{ious[1]:.3f}" if ious else "-"
        error_text = f"{errors[0]:.2f}/{errors[2]:.2f}" if errors else "-"
        lines.append(
            f"{Path(image.image).name[:32]:<32} {image.reference_faces:>5} {image.hailo_faces:>5} "
            f"{image.matched:>5}  {iou_text:<13} {error_text:<13} {len(image.missed_scores):>6} "
            f"{len(image.extra_scores):>5}"
        )
    ious, errors = _stats(report.ious), _stats(report.landmark_errors)
    relative = _stats(report.relative_landmark_errors)
    near = report.missed_scores + report.extra_scores
    lines.append(
        f"overall: {len(report.images)} images, {report.reference_faces} float faces, "
        f"{report.matched} matched, {len(report.missed_scores)} missed, {len(report.extra_scores)} extra"
        + (f" (unpaired scores {', '.join(f'{s:.2f}' for s in sorted(near))})" if near else "")
    )
    if ious and errors and relative:
        lines.append(
            f"box IoU mean {ious[0]:.3f}, min {ious[1]:.3f}; landmark error mean {errors[0]:.2f} px "
            f"({relative[0]:.1%} of the face size), max {errors[2]:.2f} px"
        )
    if report.consistent:
        lines.append(
            "verdict: consistent: the Hailo results agree with the float model within quantization noise"
        )
    else:
        lines.append(
            f"verdict: INCONSISTENT: expected at least {CONSISTENT_MATCH_RATE:.0%} of faces paired, mean box "
            f"IoU >= {CONSISTENT_MEAN_IOU} and landmark error <= {CONSISTENT_LANDMARK_ERROR:.0%} of the face "
            "size; is the HEF compiled from this ONNX model?"
        )
    return "\n".join(lines)
