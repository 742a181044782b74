"""The matcher's rules and the embedder family (batching, normalisation, recognising outputs), in process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nvr.contracts.faces import Detections
from nvr.contracts.identity import Candidate, Identity
from nvr.contracts.imaging import load_rgb
from nvr.detector import open_detector
from nvr.errors import ModelError
from nvr.families import family, recognise
from nvr.families.arcface import Embedder, model_id_for, open_embedder
from nvr.recognition.enrolment import align, decode_crop, encode_crop, largest, load_matcher, sync_embeddings
from nvr.recognition.library import FaceLibrary
from nvr.recognition.matcher import Matcher


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def test_identity_json() -> None:
    assert Identity("Ann", 0.712345, "m-1", "p1").to_dict() == {
        "name": "Ann",
        "score": 0.7123,
        "model": "m-1",
    }
    assert Identity(None, 0.1, "m-1").to_dict() == {"name": None, "score": 0.1, "model": "m-1"}
    assert Candidate("Ann", 0.55557).to_dict() == {"name": "Ann", "score": 0.5556}


def test_threshold_margin_and_candidates() -> None:
    samples = np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0), unit(0, 0, 0.9, 0.1)])
    owners = ["a", "b", "c", "c"]
    names = {"a": "Ann", "b": "Bob", "c": "Cid"}
    matcher = Matcher(samples, owners, names, "m", threshold=0.5, margin=0.1)
    clear, close_call, weak = matcher.match(
        np.stack([unit(1, 0.1, 0, 0), unit(1, 0.95, 0, 0), unit(1, 1, 1, 3)])
    )
    assert clear.identity.name == "Ann" and clear.identity.person_id == "a"
    assert [c.name for c in clear.candidates] == ["Ann", "Bob", "Cid"]
    assert clear.identity.score == pytest.approx(float(unit(1, 0.1, 0, 0) @ unit(1, 0, 0, 0)), abs=1e-6)
    # Ann leads Bob by less than the margin: nobody.
    assert close_call.identity.name is None and close_call.candidates[0].name == "Ann"
    assert close_call.candidates[0].score - close_call.candidates[1].score < 0.1
    # Below the threshold: nobody, but the best candidates are still reported.
    assert weak.identity.name is None and weak.identity.score == weak.candidates[0].score < 0.5
    assert len(weak.candidates) == 3


def test_score_is_the_better_of_mean_and_nearest_sample() -> None:
    # Two samples far apart: the query sits at their mean direction, which neither sample is close to.
    samples = np.stack([unit(1, 0.6, 0), unit(1, -0.6, 0), unit(0, 0, 1)])
    matcher = Matcher(samples, ["p", "p", "q"], {"p": "P", "q": "Q"}, "m", threshold=0.0, margin=0.0)
    (at_mean,) = matcher.match(unit(1, 0, 0)[None])
    assert at_mean.identity.score == pytest.approx(1.0, abs=1e-6)  # the mean wins
    (at_sample,) = matcher.match(unit(1, 0.6, 0)[None])
    assert at_sample.identity.score == pytest.approx(1.0, abs=1e-6)  # the nearest sample wins


def test_empty_library_and_single_person() -> None:
    empty = Matcher(np.zeros((0, 4), np.float32), [], {}, "m", threshold=0.4)
    assert empty.match(np.stack([unit(1, 0, 0, 0)]))[0].identity == Identity(None, 0.0, "m")
    one = Matcher(np.stack([unit(1, 0, 0, 0)]), ["a"], {"a": "Ann"}, "m", threshold=0.4, margin=0.05)
    (match,) = one.match(np.stack([unit(1, 0.2, 0, 0)]))
    assert match.identity.name == "Ann" and len(match.candidates) == 1


@pytest.fixture(scope="module")
def aligned_faces() -> np.ndarray:
    """The aligned largest face of every test photo, cut from the photo's own pixels."""
    from conftest import asset_path

    detector = open_detector(asset_path("models/scrfd/det_2.5g.onnx"))
    crops = []
    for path in sorted(asset_path("faces").glob("*/*")):
        image = load_rgb(path)
        detections: Detections = detector.detect(image)
        face = largest(detections)
        assert face is not None
        crop = align(image, face, detections.landmark_names)
        assert crop is not None and crop.shape == (112, 112, 3)
        crops.append(crop)
    return np.stack(crops)


@pytest.mark.parametrize(
    ("model", "dim", "batch"),
    [("fr_feature_512.onnx", 512, 1), ("mobilefacenet_192.tflite", 192, 2)],
)
def test_embedders_batch_and_normalise(
    asset: Callable[[str], Path], aligned_faces: np.ndarray, model: str, dim: int, batch: int
) -> None:
    with open_embedder(asset(f"models/recognition/{model}")) as embedder:
        assert (embedder.dim, embedder.runtime.batch) == (dim, batch)
        assert embedder.model_id == model_id_for(asset(f"models/recognition/{model}"))
        together = embedder.embed(aligned_faces[:5])  # an odd count: the fixed batch of 2 is padded
        alone = np.concatenate([embedder.embed(face[None]) for face in aligned_faces[:5]])
        assert together.shape == (5, dim) and together.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(together, alone, atol=1e-4)


def test_family_recognises_embedders_only() -> None:
    assert family("arcface").role == "embedder"
    assert family("arcface").input.size == (112, 112) and not family("arcface").input.letterbox
    shapes: list[list[int | str | None]] = [[1, 512], ["batch", 512], [2, 192], [512], [1, 1, 512]]
    for shape in shapes:
        assert recognise([shape], "embedder").name == "arcface"
    with pytest.raises(ModelError):
        recognise([[1, 3, 112, 112]], "embedder")


def test_runtime_output_that_is_not_a_vector(tmp_path: Path) -> None:
    class ImageOut:
        name = "fake"
        batch: int | None = 1
        output_shape: tuple[int | str | None, ...] = (1, 3, 112, 112)

        def run(self, faces: np.ndarray) -> np.ndarray:
            return faces.astype(np.float32)

        def close(self) -> None:
            pass

    with pytest.raises(ModelError, match="not one embedding vector per face"):
        Embedder(ImageOut(), "fake-0", tmp_path / "fake.onnx")


def test_switching_models_re_embeds_from_the_crops(
    asset: Callable[[str], Path], aligned_faces: np.ndarray, tmp_path: Path
) -> None:
    with (
        FaceLibrary(tmp_path / "faces.db") as library,
        open_embedder(asset("models/recognition/fr_feature_512.onnx")) as first,
        open_embedder(asset("models/recognition/mobilefacenet_192.tflite")) as second,
    ):
        crops = [encode_crop(face) for face in aligned_faces[:3]]
        vectors = first.embed(np.stack([decode_crop(c) for c in crops]))
        library.enrol("Ann", [(c, {first.model_id: v}, "x") for c, v in zip(crops, vectors, strict=True)])
        assert len(library.samples_missing(second.model_id)) == 3
        assert sync_embeddings(library, second) == 3 and sync_embeddings(library, second) == 0
        matrix, _ = library.embedding_matrix(second.model_id)
        assert matrix.shape == (3, 192)
        matcher = load_matcher(library, second.model_id, threshold=0.5)
        (match,) = matcher.match(second.embed(aligned_faces[:1]))
        assert match.identity.name == "Ann" and match.identity.model == second.model_id


def test_far_threshold_and_roc() -> None:
    from nvr.evaluation.faces import evaluate_faces, threshold_for_far

    impostor = np.linspace(-0.2, 0.3, 200).astype(np.float32)  # 1 % of 200 = 2 pairs may pass
    threshold = threshold_for_far(impostor)
    assert np.sum(impostor >= threshold) <= 2 and np.sum(impostor >= threshold - 0.003) > 2

    # Three people along the axes; each face's first pixel says which vector it embeds to; b's probe (9)
    # leans towards a.
    faces = {
        name: [np.full((112, 112, 3), i, np.uint8), np.full((112, 112, 3), i, np.uint8)]
        for i, name in enumerate("abc")
    }
    faces["b"][1][0, 0, 0] = 9
    vectors = {0: unit(1, 0, 0), 1: unit(0, 1, 0), 2: unit(0, 0, 1), 9: unit(0.8, 0.6, 0)}

    def embed(batch: list[np.ndarray]) -> np.ndarray:
        return np.stack([vectors[int(face[0, 0, 0])] for face in batch])

    result = evaluate_faces(faces, embed, enroll=1, threshold=0.5, margin=0.0, model_id="m")
    assert result.probes == 3 and result.rank1 == pytest.approx(2 / 3)
    assert result.accepted_wrong == pytest.approx(1 / 3)  # b's probe is named a
    far, tar = result.roc()
    assert far[0] == 0 and tar[0] == 0 and far[-1] == 1 and tar[-1] == 1
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0)
