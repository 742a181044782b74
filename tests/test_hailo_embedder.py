"""The face embedder on the Hailo (double): real embeddings, the CPU path's names, one VDevice with SCRFD.

HEFs used and why: `arcface_mobilefacenet.hailo8.hef` is a real Hailo-8 build. Our only SCRFD HEF is a
Hailo-10H build, and no real chip runs both, so the tests that put both networks on one simulated Hailo-8
use a SYNTHETIC Hailo-8 copy of it (tests/hef_synth.py `synthetic_hailo8_scrfd`: the real file with its
hw_arch rewritten and its SDK string saying so). Its layers and quantization are the real file's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hailo_support import SCRFD_HEF
from hef_synth import SYNTHETIC_LABEL, synthetic_hailo8_scrfd

from nvr.backends.hailo import HailoEngine, HailoSettings, open_embedder_runtime, open_hailo_embedder
from nvr.contracts.alignment import align_face
from nvr.contracts.arrays import FloatArray
from nvr.contracts.frameref import ArrayFrame
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.detector import open_detector
from nvr.errors import DeviceError, ModelError
from nvr.events.snapshot import crop_face
from nvr.hef import read_hef

pytest_plugins = ("hailo_support",)

ARCFACE_HEF = "hef/arcface_mobilefacenet.hailo8.hef"
EMBEDDER_ONNX = "models/recognition/fr_feature_512.onnx"
PEOPLE = ("alex_lacamoire", "biden", "kit_harington", "lin_manuel_miranda", "obama", "rose_leslie")

Faces = tuple[npt.NDArray[np.uint8], list[str]]


@pytest.fixture(scope="module")
def aligned_faces() -> Faces:
    """The largest face of every photo in faces/, ArcFace-aligned (CPU SCRFD landmarks), with its person."""
    from nvr.assets import assets_dir

    root = assets_dir()
    detector = open_detector(root / "models" / "scrfd" / "det_2.5g.onnx", "onnx")
    crops, names = [], []
    try:
        for person in PEOPLE:
            for photo in sorted((root / "faces" / person).iterdir()):
                image = load_rgb(photo)
                found = detector.detect(image)
                assert len(found), f"{photo}: no face"
                i = int(
                    np.argmax(
                        (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
                    )
                )
                crop = crop_face(
                    image, 1.0, found.boxes[i], found.landmarks[i], found.landmark_names, margin=0.6
                )
                assert crop is not None
                aligned = align_face(crop.pixels, crop.landmarks, crop.landmark_names)
                assert aligned is not None
                crops.append(aligned)
                names.append(person)
    finally:
        detector.close()
    return np.stack(crops), names


def cpu_embeddings(asset: Callable[[str], Path], faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The float reference: the same ONNX model on the CPU, RGB, (x - 127.5) / 128, L2-normalised."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(asset(EMBEDDER_ONNX)), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = [
        session.run(None, {name: ((f.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]})[0][0]
        for f in faces
    ]
    vectors = np.asarray(rows, np.float32)
    normalised: FloatArray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def names_by_nearest_person(vectors: npt.NDArray[np.float32], names: list[str]) -> list[str | None]:
    """Enrol each person's first photo; name every other photo by the best cosine above 0.3."""
    enrolled = {name: vectors[names.index(name)] for name in PEOPLE}
    result: list[str | None] = []
    for vector in vectors:
        scores = {name: float(vector @ ref) for name, ref in enrolled.items()}
        best = max(scores, key=scores.__getitem__)
        result.append(best if scores[best] >= 0.3 else None)
    return result


def test_double_serves_real_quantized_embeddings(
    asset: Callable[[str], Path], double: Callable[..., None], aligned_faces: Faces
) -> None:
    """The double runs fr_feature_512.onnx and quantizes with the HEF output's qp (zp 144, scale 0.0167)."""
    double(arch="hailo8")
    import hailo_platform as hp

    faces, _ = aligned_faces
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vdevice:
        model = vdevice.create_infer_model(str(asset(ARCFACE_HEF)))
        assert model.output().shape == [512]
        qp = model.output().quant_infos[0]
        configured = model.configure()
        raw = np.zeros((len(faces), 512), np.uint8)
        bindings = []
        for face, out in zip(faces, raw, strict=True):
            binding = configured.create_bindings(output_buffers={model.output_names[0]: out})
            binding.input().set_buffer(np.array(face))
            bindings.append(binding)
        chunk = configured.get_async_queue_size()  # a job larger than the queue is HAILO_QUEUE_IS_FULL
        for first in range(0, len(bindings), chunk):
            configured.run(bindings[first : first + chunk], 30000)
        configured.shutdown()
    dequantized = (raw.astype(np.float32) - qp.qp_zp) * qp.qp_scale
    dequantized /= np.linalg.norm(dequantized, axis=1, keepdims=True)
    cosines = np.sum(dequantized * cpu_embeddings(asset, faces), axis=1)
    assert cosines.min() >= 0.999, cosines  # ~0.9995: 8-bit quantization of values within +-0.6
    assert raw.min() > 0 and raw.max() < 255  # nothing saturates: the outputs lie inside the HEF's range


def test_hailo_embedder_gives_the_cpu_paths_embeddings_and_names(
    asset: Callable[[str], Path], double: Callable[..., None], aligned_faces: Faces
) -> None:
    double(arch="hailo8")
    faces, names = aligned_faces
    embedder = open_hailo_embedder(asset(ARCFACE_HEF), HailoSettings(embedder_batch=4))
    try:
        assert embedder.dim == 512 and embedder.model_id.startswith("arcface_mobilefacenet.hailo8-")
        hailo = embedder.embed(faces)
        assert embedder.embed(faces[:0]).shape == (0, 512)
        with pytest.raises(ValueError, match=r"faces must be uint8 \[N, 112, 112, 3\]"):
            embedder.embed(faces[0])
    finally:
        embedder.close()
    assert hailo.dtype == np.float32 and hailo.shape == (len(faces), 512)
    assert np.allclose(np.linalg.norm(hailo, axis=1), 1.0, atol=1e-5)
    cpu = cpu_embeddings(asset, faces)
    assert np.sum(hailo * cpu, axis=1).min() >= 0.99
    on_hailo, on_cpu = names_by_nearest_person(hailo, names), names_by_nearest_person(cpu, names)
    assert on_hailo == on_cpu == names  # every photo named right, the same way on both paths


def test_embedder_runtime_for_the_family_returns_dequantized_vectors(
    asset: Callable[[str], Path], double: Callable[..., None], aligned_faces: Faces
) -> None:
    """The runtime the embedder family drives (nvr/families/arcface.py): raw vectors; it normalises."""
    double(arch="hailo8")
    faces, _ = aligned_faces
    runtime = open_embedder_runtime(asset(ARCFACE_HEF))
    try:
        assert (runtime.name, runtime.batch, runtime.output_shape) == ("hailo", None, (None, 512))
        raw = runtime.run(faces[:3])
    finally:
        runtime.close()
    assert raw.dtype == np.float32 and raw.shape == (3, 512)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # the HEF's own scale: not yet normalised
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.sum(unit * cpu_embeddings(asset, faces[:3]), axis=1).min() >= 0.99


def test_closing_fails_waiting_faces_at_once(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    """Faces still waiting when the engine closes get an error, not a wait for the embed timeout."""
    double(arch="hailo8", replay="1", latency_ms="50")  # 64 faces at 50 ms: ~3 s of device time
    embedder = open_hailo_embedder(asset(ARCFACE_HEF))
    outcome: list[BaseException | None] = []

    def embed() -> None:
        try:
            embedder.embed(np.zeros((64, 112, 112, 3), np.uint8))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=embed)
    worker.start()
    time.sleep(0.3)
    embedder.close()
    worker.join(15)  # the embed timeout would be 20 s
    assert not worker.is_alive()
    assert isinstance(outcome[0], DeviceError) and "closed" in str(outcome[0])


def test_a_hef_that_is_not_an_embedder_is_one_line(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    double(arch="hailo10h")
    with pytest.raises(ModelError) as caught:
        open_hailo_embedder(asset(SCRFD_HEF))
    message = str(caught.value)
    assert "\n" not in message and "not a face embedder" in message and "scrfd_2.5g.hailo10h.hef" in message
    assert "[640x640x3]" in message and "80x80x8" in message


@pytest.fixture
def hailo8_scrfd(asset: Callable[[str], Path], tmp_path: Path) -> Path:
    target = tmp_path / "scrfd_2.5g.hailo8-synthetic.hef"
    synthetic_hailo8_scrfd(asset(SCRFD_HEF), target)
    info = read_hef(target)
    assert info.hw_arch == 1 and info.sdk_version == SYNTHETIC_LABEL  # labelled as what it is
    return target


def test_detector_and_embedder_share_one_vdevice(
    asset: Callable[[str], Path],
    double: Callable[..., None],
    hailo8_scrfd: Path,
    aligned_faces: Faces,
) -> None:
    """SCRFD and ArcFace configured on ONE VDevice; detection frames and embeddings flow at the same time."""
    double(arch="hailo8")
    from hailo_platform.pyhailort import _pyhailort

    faces, _ = aligned_faces
    frame = np.zeros((640, 640, 3), np.uint8)
    letterbox_into(load_rgb(asset("images/insightface_t1.jpg")), frame)
    settings = HailoSettings(batch_size=2, input_queue=64, embedder_batch=4)
    with HailoEngine(hailo8_scrfd, settings, embedder_hef=asset(ARCFACE_HEF)).start() as engine:
        embedder = engine.embedder()
        assert embedder is not None
        for i in range(12):
            engine.submit(ArrayFrame(frame, i))
        vectors = embedder.embed(faces)  # while detection jobs are in flight
        got: list[object] = []
        while len(got) < 12:
            result = engine.get_result(timeout=60)
            assert result is not None
            with result:
                assert result.error is None
                got.append(result.tag)
        assert got == list(range(12))
    observed = _pyhailort.REGISTRY.observed
    assert set(observed) == {"scrfd_2_5g", "arcface_mobilefacenet"}
    # Detection first when both have frames waiting (HailoRT's scheduler priority, which the double models).
    assert observed["scrfd_2_5g"].priority > observed["arcface_mobilefacenet"].priority == 16
    assert np.sum(vectors * cpu_embeddings(asset, faces), axis=1).min() >= 0.99


def test_two_networks_share_the_device_timeline(
    asset: Callable[[str], Path], double: Callable[..., None], hailo8_scrfd: Path
) -> None:
    """Device time per network is configurable and both networks book the same chip: 60 detection frames at
    10 ms and 120 faces at 5 ms cannot finish before 1.2 s of device time, however they interleave (two
    separate timelines would finish in 0.6 s)."""
    double(arch="hailo8", replay="1", latency_ms="scrfd_2_5g=10,arcface_mobilefacenet=5")
    from hailo_platform.pyhailort import _pyhailort

    frame = np.zeros((640, 640, 3), np.uint8)
    faces = np.zeros((120, 112, 112, 3), np.uint8)
    settings = HailoSettings(batch_size=4, input_queue=64, embedder_batch=8)
    with HailoEngine(hailo8_scrfd, settings, embedder_hef=asset(ARCFACE_HEF)).start() as engine:
        embedder = engine.embedder()
        assert embedder is not None
        embedder.embed(faces[:1])  # replay: the one ONNX run happens before the clock starts
        engine.submit(ArrayFrame(frame, "warm"))
        with engine.get_result(timeout=60) as first:  # type: ignore[union-attr]
            assert first.tag == "warm"
        timeline = _pyhailort.REGISTRY.timeline
        busy_before, start = timeline.busy_s, time.perf_counter()
        for i in range(60):
            engine.submit(ArrayFrame(frame, i))
        embedder.embed(faces)
        for _ in range(60):
            result = engine.get_result(timeout=60)
            assert result is not None
            result.release()
        elapsed = time.perf_counter() - start
    assert timeline.busy_s - busy_before == pytest.approx(60 * 0.010 + 120 * 0.005)
    assert elapsed >= 0.95 * (60 * 0.010 + 120 * 0.005)
