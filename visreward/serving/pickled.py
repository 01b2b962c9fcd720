"""The ddpo-pytorch / flow_grpo reward-server protocol, served by `visreward serve --accept-pickle` at POST /.

Its clients (flow_grpo's deqa, unifiedreward and geneval rewards, DiffusionNFT, VeRL-Omni's HTTP scorer) send
pickle.dumps({"images": [JPEG bytes, ...], "prompts": [...] (often a numpy array of str, from np.array_split),
...metadata}) and read the pickled answer's "outputs" or "scores". The answer carries both (the combined score),
plus "rewards": {NAME: [...]}. Keys the clients add for their own servers ("meta_datas", "only_strict",
"queries", "answers") are accepted and ignored.

Unpickling runs whatever the sender named, so the unpickler here admits no global but numpy's own array and
scalar reconstruction (dict, list, tuple, str, bytes, numbers, bools and None need none), and refuses object arrays.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from ..io.wire import ProtocolError, RequestLimits, ScoreRequest, decode_images

PICKLE = "application/octet-stream"
# what ndarray, dtype and numpy scalars pickle to (protocols 3 to 5; numpy 1 names its core `numpy.core`)
NUMPY_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the pickle names {module}.{name}; only plain containers, scalars and numpy "
                                     "arrays are accepted")


def _refuse_objects(value, where: str = "the body") -> None:
    """Object arrays can hold anything; refuse them wherever they are nested."""
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise ProtocolError(400, f"{where}: object arrays are refused (send str, bytes or numbers)")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        _refuse_objects(item, f"{where}[{key!r}]")


def load_plain_pickle(body: bytes):
    """The pickled value, built without calling anything but numpy's reconstruction; ProtocolError otherwise."""
    try:
        value = _PlainUnpickler(io.BytesIO(body)).load()
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is the sender's: a 400, never a crash
        raise ProtocolError(400, f"the body is not an acceptable pickle ({type(e).__name__}: {e})") from None
    _refuse_objects(value)
    return value


def _plain_list(value, key: str) -> list:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ProtocolError(400, f"'{key}' must be a list (or a numpy array)")
    return list(value)


def parse_pickle_request(body: bytes, limits: RequestLimits = RequestLimits()) -> ScoreRequest:
    data = load_plain_pickle(body)
    if not isinstance(data, dict) or "images" not in data:
        raise ProtocolError(400, "the pickle must be a dict with an 'images' list of encoded images")
    blobs = _plain_list(data["images"], "images")
    if not blobs:
        raise ProtocolError(400, "'images' is empty")
    bad = next((i for i, blob in enumerate(blobs) if not isinstance(blob, bytes)), None)
    if bad is not None:
        raise ProtocolError(400, f"images[{bad}]: expected JPEG or PNG bytes, got {type(blobs[bad]).__name__}")
    images = decode_images(blobs, "images", limits)
    prompts = _plain_list(data["prompts"], "prompts") if data.get("prompts") is not None else [None] * len(images)
    if len(prompts) != len(images) or not all(p is None or isinstance(p, str) for p in prompts):
        raise ProtocolError(400, f"'prompts' must hold one string per image ({len(images)} images, {len(prompts)} prompts)")
    return ScoreRequest(images, prompts, None)


def pickle_answer(combined: list[float], rewards: dict[str, list[float]]) -> bytes:
    return pickle.dumps({"outputs": combined, "scores": combined, "rewards": rewards})
