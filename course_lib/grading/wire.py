"""Values across the sandbox boundary, by value, in a format that cannot run code.

The grader and its workers exchange *messages*. A message is a JSON header followed by raw byte blobs::

    4 bytes   big-endian length n of the header
    n bytes   UTF-8 JSON header: {"op": ..., ..., "blobs": [len_0, len_1, ...]}
    len_i     the raw bytes of blob i, one after the other

Values inside a header are plain JSON (``null``, booleans, numbers, strings, lists) or tagged objects::

    {"$tensor": {"dtype": "float32", "shape": [4, 6], "blob": 0}}    a torch.Tensor, C order, native bytes
    {"$ndarray": {...same...}}                                       a numpy array of a plain dtype
    {"$tuple": [...]}   {"$dict": [[key, value], ...]}   {"$float": "nan" | "inf" | "-inf"}
    {"$int": "123..."}  (integers beyond 64 bits)        {"$dtype": "float32"}
    {"$npscalar": {"dtype": "float32", "value": 1.5}}
    {"$generator_seed": 7}                               core.GeneratorSeed (a fresh generator per call)
    {"$module_inputs": {"init": ..., "state": ..., "args": ...}}    core.ModuleInputs
    {"$opaque": "MyTensor (a torch.Tensor subclass)"}    anything else: only its type name crosses

Nothing is ever unpickled or evaluated: decoding only builds tensors, arrays, numbers, strings and
containers, after checking the dtype against a whitelist, the shape against the blob's length and every
size against a budget. ``Opaque`` stands in for an object of any other type (a tensor subclass with a
custom ``__eq__``, a generator, a model): the grader sees its type name and nothing else, so the
comparison reports "should be a torch.Tensor, got MyTensor".

Both ends run on the same machine, so blobs are in native byte order.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional

import numpy as np
import torch

from ..exercises.core import GeneratorSeed, ModuleInputs

# Captured once at import, so that a learner's monkeypatching of torch.Tensor in the worker does not
# reach the encoder (the worker imports this module before any learner code runs).
_Tensor = torch.Tensor
_contiguous = torch.Tensor.contiguous
_detach = torch.Tensor.detach
_reshape = torch.Tensor.reshape
_view = torch.Tensor.view
_numpy = torch.Tensor.numpy
_numel = torch.Tensor.numel
_element_size = torch.Tensor.element_size
_resolve_conj = torch.Tensor.resolve_conj
_resolve_neg = torch.Tensor.resolve_neg
_frombuffer = torch.frombuffer
_empty = torch.empty
_ndarray = np.ndarray
_generic = np.generic
_dumps = json.dumps
_loads = json.loads
_type = type
_len = len

#: dtypes that may cross, by name. Everything else (objects, strings, quantized, ...) is refused.
TORCH_DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
    "complex64": torch.complex64, "complex128": torch.complex128,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
    "uint8": torch.uint8, "bool": torch.bool,
}
_TORCH_NAME = {v: k for k, v in TORCH_DTYPES.items()}
NUMPY_DTYPES = {k: np.dtype(k) for k in TORCH_DTYPES if k != "bfloat16"}
_NUMPY_NAME = {v: k for k, v in NUMPY_DTYPES.items()}

MAX_HEADER_BYTES = 8 * 2**20
MAX_DEPTH = 16
MAX_ITEMS = 100_000
MAX_STR = 100_000
MAX_RANK = 16
_TYPE_NAME_RE = re.compile(r"[^A-Za-z0-9_.() -]")


class WireError(ValueError):
    """Data that breaks the format or a limit; the message says which."""


class TooLarge(WireError):
    """A value larger than the size budget."""


class Opaque:
    """Stands for a value of a type that may not cross the boundary; only its type name did."""

    __slots__ = ()
    type_name = "object"

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


_OPAQUE_TYPES: dict = {}


def opaque(type_name: str) -> Opaque:
    """A placeholder whose ``type(...).__name__`` is the (sanitised) name of the learner's type."""
    name = _TYPE_NAME_RE.sub("_", str(type_name))[:80] or "object"
    cls = _OPAQUE_TYPES.get(name)
    if cls is None:
        cls = _OPAQUE_TYPES[name] = type(name, (Opaque,), {"__slots__": (), "type_name": name})
    return cls()


@dataclass
class Budget:
    """What one message may still hold while encoding or decoding."""

    bytes_left: int
    items_left: int = MAX_ITEMS

    def take_bytes(self, n: int, what: str) -> None:
        if n > self.bytes_left:
            raise TooLarge(f"{what} is {n / 2**20:.1f} MB, more than the {self.bytes_left / 2**20:.1f} MB left "
                           f"for this value")
        self.bytes_left -= n

    def take_item(self) -> None:
        self.items_left -= 1
        if self.items_left < 0:
            raise TooLarge(f"more than {MAX_ITEMS} items in one value")


# ---------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------


def encode(value: Any, blobs: list, budget: Budget, depth: int = 0) -> Any:
    """A JSON-able description of ``value``; tensor and array bytes are appended to ``blobs``.

    Raises :class:`TooLarge` when the value exceeds the budget. Types that may not cross become
    ``{"$opaque": type name}``; this function never calls a method of an object it does not know.
    """
    budget.take_item()
    if depth > MAX_DEPTH:
        raise TooLarge(f"value nested more than {MAX_DEPTH} levels deep")
    t = _type(value)
    if value is None or t is bool or t is str:
        if t is str and _len(value) > MAX_STR:
            raise TooLarge(f"a string of {_len(value)} characters")
        return value
    if t is int:
        if -2**63 <= value < 2**63:
            return value
        if abs(value) < 10**300:
            return {"$int": str(value)}
        return {"$opaque": "int (more than 300 digits)"}
    if t is float:
        if math.isnan(value) or math.isinf(value):
            return {"$float": repr(value)}
        return value
    if t is _Tensor:
        return {"$tensor": _encode_tensor(value, blobs, budget)}
    if t is _ndarray:
        return {"$ndarray": _encode_array(value, blobs, budget)}
    if t is tuple or t is torch.Size:
        return {"$tuple": [encode(v, blobs, budget, depth + 1) for v in value]}
    if t is list:
        return [encode(v, blobs, budget, depth + 1) for v in value]
    if t is dict or (t.__name__ == "OrderedDict" and t.__module__ == "collections"):  # state_dict()
        items = []
        for k, v in dict.items(value):
            if _type(k) not in (str, int):
                return {"$opaque": "dict with keys that are not strings or ints"}
            items.append([encode(k, blobs, budget, depth + 1), encode(v, blobs, budget, depth + 1)])
        return {"$dict": items}
    if t is torch.dtype:
        name = _TORCH_NAME.get(value)
        return {"$dtype": name} if name else {"$opaque": f"dtype {value}"}
    if t is GeneratorSeed:
        return {"$generator_seed": int(value.seed)}
    if t is ModuleInputs:
        return {"$module_inputs": {"init": encode(value.init, blobs, budget, depth + 1),
                                   "state": encode(value.state, blobs, budget, depth + 1),
                                   "args": encode(value.args, blobs, budget, depth + 1)}}
    if isinstance(value, _generic) and _type(value).__module__ == "numpy":
        name = _NUMPY_NAME.get(value.dtype)
        if name is not None:
            item = value.item()
            return {"$npscalar": {"dtype": name, "value": encode(item, blobs, budget, depth + 1)}}
    if isinstance(value, _Tensor):
        return {"$opaque": f"{t.__name__} (a torch.Tensor subclass)"}
    return {"$opaque": t.__name__}


def _encode_tensor(t: torch.Tensor, blobs: list, budget: Budget) -> dict:
    name = _TORCH_NAME.get(t.dtype)
    if name is None:
        raise WireError(f"tensors of dtype {t.dtype} cannot be returned")
    if t.layout != torch.strided or t.device.type != "cpu":
        raise WireError(f"only dense CPU tensors can be returned (got layout {t.layout}, device {t.device})")
    if t.dim() > MAX_RANK:
        raise TooLarge(f"a tensor with {t.dim()} dimensions")
    budget.take_bytes(_numel(t) * _element_size(t), f"a tensor of shape {tuple(t.shape)}")
    flat = _reshape(_contiguous(_resolve_neg(_resolve_conj(_detach(t)))), (-1,))
    if name == "bfloat16":
        flat = _view(flat, torch.int16)
    data = _numpy(flat).tobytes()
    blobs.append(data)
    return {"dtype": name, "shape": [int(s) for s in t.shape], "blob": _len(blobs) - 1}


def _encode_array(a: np.ndarray, blobs: list, budget: Budget) -> dict:
    name = _NUMPY_NAME.get(a.dtype)
    if name is None:
        raise WireError(f"numpy arrays of dtype {a.dtype} cannot be returned")
    if a.ndim > MAX_RANK:
        raise TooLarge(f"an array with {a.ndim} dimensions")
    budget.take_bytes(int(a.nbytes), f"an array of shape {a.shape}")
    blobs.append(np.ascontiguousarray(a).tobytes())
    return {"dtype": name, "shape": [int(s) for s in a.shape], "blob": _len(blobs) - 1}


# ---------------------------------------------------------------------------------------------------
# Decoding (never trusts its input)
# ---------------------------------------------------------------------------------------------------


class _Decoder:
    def __init__(self, blobs: list, budget: Budget):
        self.blobs = blobs
        self.used: set = set()
        self.budget = budget

    def value(self, obj: Any, depth: int = 0) -> Any:
        self.budget.take_item()
        if depth > MAX_DEPTH:
            raise WireError(f"value nested more than {MAX_DEPTH} levels deep")
        t = _type(obj)
        if obj is None or t in (bool, int, float):
            return obj
        if t is str:
            if _len(obj) > MAX_STR:
                raise TooLarge(f"a string of {_len(obj)} characters")
            return obj
        if t is list:
            return [self.value(v, depth + 1) for v in obj]
        if t is not dict or _len(obj) != 1:
            raise WireError(f"unexpected {t.__name__} in a value")
        (tag, body), = obj.items()
        if tag == "$tuple":
            return tuple(self.value(v, depth + 1) for v in self._list(body, tag))
        if tag == "$dict":
            out = {}
            for pair in self._list(body, tag):
                if _type(pair) is not list or _len(pair) != 2:
                    raise WireError("a $dict item must be a [key, value] pair")
                key = self.value(pair[0], depth + 1)
                if _type(key) not in (str, int):
                    raise WireError("dict keys must be strings or integers")
                out[key] = self.value(pair[1], depth + 1)
            return out
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise WireError(f"bad $float {body!r}")
            return float(body)
        if tag == "$int":
            if _type(body) is not str or not re.fullmatch(r"-?\d{1,300}", body):
                raise WireError("bad $int")
            return int(body)
        if tag == "$dtype":
            if body not in TORCH_DTYPES:
                raise WireError(f"dtype {body!r} is not allowed")
            return TORCH_DTYPES[body]
        if tag == "$tensor":
            return self._tensor(body)
        if tag == "$ndarray":
            return self._array(body)
        if tag == "$npscalar":
            if _type(body) is not dict or body.get("dtype") not in NUMPY_DTYPES:
                raise WireError("bad $npscalar")
            item = self.value(body.get("value"), depth + 1)
            if _type(item) not in (bool, int, float, complex):
                raise WireError("bad $npscalar value")
            return NUMPY_DTYPES[body["dtype"]].type(item)
        if tag == "$generator_seed":
            if _type(body) is not int:
                raise WireError("bad $generator_seed")
            return GeneratorSeed(body)
        if tag == "$module_inputs":
            if _type(body) is not dict or set(body) != {"init", "state", "args"}:
                raise WireError("bad $module_inputs")
            init, state, args = (self.value(body[k], depth + 1) for k in ("init", "state", "args"))
            if _type(init) is not dict or _type(state) is not dict or _type(args) is not tuple:
                raise WireError("bad $module_inputs")
            return ModuleInputs(init, state, args)
        if tag == "$opaque":
            if _type(body) is not str:
                raise WireError("bad $opaque")
            return opaque(body)
        raise WireError(f"unknown tag {str(tag)[:40]!r}")

    @staticmethod
    def _list(body: Any, tag: str) -> list:
        if _type(body) is not list:
            raise WireError(f"{tag} needs a list")
        return body

    def _blob(self, spec: Any, itemsize: int, names: dict) -> tuple:
        if _type(spec) is not dict or set(spec) != {"dtype", "shape", "blob"}:
            raise WireError("an array needs exactly dtype, shape and blob")
        if spec["dtype"] not in names:
            raise WireError(f"dtype {str(spec['dtype'])[:40]!r} is not allowed")
        shape, index = spec["shape"], spec["blob"]
        if _type(shape) is not list or _len(shape) > MAX_RANK or any(_type(s) is not int or s < 0 for s in shape):
            raise WireError("bad shape")
        if _type(index) is not int or not 0 <= index < _len(self.blobs) or index in self.used:
            raise WireError("bad blob reference")
        self.used.add(index)
        numel = math.prod(shape)
        data = self.blobs[index]
        if numel * itemsize != _len(data):
            raise WireError(f"shape {tuple(shape)} needs {numel * itemsize} bytes, the blob has {_len(data)}")
        self.budget.take_bytes(_len(data), f"an array of shape {tuple(shape)}")
        return tuple(shape), data, numel

    def _tensor(self, spec: Any) -> torch.Tensor:
        dtype = TORCH_DTYPES.get(spec.get("dtype") if _type(spec) is dict else None)
        if dtype is None:
            raise WireError("bad $tensor")
        itemsize = torch.empty((), dtype=dtype).element_size()
        shape, data, numel = self._blob(spec, itemsize, TORCH_DTYPES)
        if numel == 0:
            return _empty(shape, dtype=dtype)
        return _frombuffer(bytearray(data), dtype=dtype).reshape(shape)

    def _array(self, spec: Any) -> np.ndarray:
        dtype = NUMPY_DTYPES.get(spec.get("dtype") if _type(spec) is dict else None)
        if dtype is None:
            raise WireError("bad $ndarray")
        shape, data, _ = self._blob(spec, dtype.itemsize, NUMPY_DTYPES)
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def decode(obj: Any, blobs: list, budget: Budget) -> Any:
    """The value described by ``obj`` (see the module docstring); :class:`WireError` when malformed."""
    return _Decoder(blobs, budget).value(obj)


def encode_value(value: Any, max_bytes: int) -> tuple:
    """``(description, blobs)`` of one value within ``max_bytes``."""
    blobs: list = []
    return encode(value, blobs, Budget(max_bytes)), blobs


# ---------------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------------


def message_bytes(header: dict, blobs: list = ()) -> bytes:
    """The bytes of one message (header plus blobs)."""
    header = dict(header, blobs=[_len(b) for b in blobs])
    head = _dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return b"".join([_len(head).to_bytes(4, "big"), head, *blobs])


def write_message(stream: BinaryIO, header: dict, blobs: list = ()) -> None:
    stream.write(message_bytes(header, blobs))
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the channel")
        parts.append(chunk)
        left -= _len(chunk)
    return b"".join(parts)


def read_message(stream: BinaryIO, max_bytes: int, max_header: int = MAX_HEADER_BYTES) -> tuple:
    """``(header, blobs)`` of the next message; ``EOFError`` at the end, :class:`WireError` if malformed."""
    first = stream.read(4)
    if not first:
        raise EOFError("the other side closed the channel")
    if _len(first) < 4:
        first += _read_exact(stream, 4 - _len(first))
    n = int.from_bytes(first, "big")
    if n > max_header:
        raise TooLarge(f"a message header of {n} bytes (limit {max_header})")
    try:
        header = _loads(_read_exact(stream, n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"a message header that is not JSON: {str(e)[:80]}") from None
    if _type(header) is not dict or _type(header.get("op")) is not str:
        raise WireError("a message header must be an object with an 'op'")
    sizes = header.get("blobs", [])
    if _type(sizes) is not list or any(_type(s) is not int or s < 0 for s in sizes):
        raise WireError("bad blob sizes")
    if sum(sizes) > max_bytes:
        raise TooLarge(f"a message of {sum(sizes) / 2**20:.1f} MB (limit {max_bytes / 2**20:.1f} MB)")
    return header, [_read_exact(stream, s) for s in sizes]


def decode_from(header: dict, key: str, blobs: list, max_bytes: int) -> Optional[Any]:
    """Decode ``header[key]`` with a fresh budget."""
    return decode(header.get(key), blobs, Budget(max_bytes))


def decode_inputs(header: dict, blobs: list, max_bytes: int) -> Optional[Any]:
    """The call's inputs as the worker's call left them (``header["inputs"]``: ``(args, kwargs)``), so that
    the grader can check they are unchanged; ``None`` when the worker did not send them."""
    if "inputs" not in header:
        return None
    return decode(header["inputs"], blobs, Budget(max_bytes))
