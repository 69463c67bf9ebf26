"""The wire format: values by value, validated, never unpickled."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from course_lib.exercises.core import GeneratorSeed, ModuleInputs, compare
from course_lib.grading import wire


def roundtrip(value, max_bytes=1 << 24):
    desc, blobs = wire.encode_value(value, max_bytes)
    msg = wire.message_bytes({"op": "x", "v": desc}, blobs)
    header, got_blobs = wire.read_message(io.BytesIO(msg), max_bytes)
    return wire.decode(header["v"], got_blobs, wire.Budget(max_bytes))


@pytest.fixture(autouse=True)
def no_pickle(monkeypatch):
    """Decoding must never reach pickle or torch.load."""
    def boom(*a, **k):
        raise AssertionError("pickle was used")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)


@pytest.mark.parametrize("dtype", list(wire.TORCH_DTYPES.values()), ids=list(wire.TORCH_DTYPES))
def test_tensors_of_every_allowed_dtype_roundtrip(dtype):
    x = (torch.randn(3, 4) * 10).to(dtype)
    got = roundtrip(x)
    assert type(got) is torch.Tensor and got.dtype == dtype and got.shape == x.shape
    assert torch.equal(got, x)


def test_special_tensors_roundtrip():
    base = torch.randn(4, 6)
    for x in (base.t(), base[:, ::2], torch.tensor(3.5), torch.zeros(0, 5), base.requires_grad_(),
              torch.tensor([float("nan"), float("inf"), -float("inf")])):
        got = roundtrip(x)
        assert compare(x.detach(), got) is None


def test_containers_numbers_and_course_types_roundtrip():
    value = (1, -2**70, 2.5, float("nan"), float("-inf"), True, None, "text", [1, (2, 3)],
             {"a": torch.ones(2), 3: "x"}, torch.float16, GeneratorSeed(7),
             ModuleInputs({"d_model": 8}, {"w": torch.ones(2, 2)}, (torch.zeros(1, 8),)),
             np.float32(1.5), np.arange(6).reshape(2, 3))
    got = roundtrip(value)
    assert type(got) is tuple and got[1] == -2**70 and got[3] != got[3] and got[4] == float("-inf")
    assert got[8] == [1, (2, 3)] and got[9]["a"].tolist() == [1.0, 1.0] and got[9][3] == "x"
    assert got[10] is torch.float16 and got[11] == GeneratorSeed(7)
    assert isinstance(got[12], ModuleInputs) and got[12].init == {"d_model": 8} and torch.equal(got[12].args[0], torch.zeros(1, 8))
    assert type(got[13]) is np.float32 and type(got[14]) is np.ndarray and got[14].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_unknown_types_and_tensor_subclasses_cross_only_as_a_type_name():
    class Sneaky(torch.Tensor):
        def __eq__(self, other):
            return True

    class Thing:
        def __reduce__(self):
            raise AssertionError("must not be touched")

    got = roundtrip((torch.zeros(2).as_subclass(Sneaky), Thing(), (i for i in range(3))))
    assert all(isinstance(g, wire.Opaque) for g in got)
    assert type(got[0]).__name__ == "Sneaky (a torch.Tensor subclass)"
    assert compare(torch.zeros(2), got[0]).text == "output should be a torch.Tensor, got Sneaky (a torch.Tensor subclass)"
    assert type(got[1]).__name__ == "Thing"


def test_size_budget_is_enforced():
    with pytest.raises(wire.TooLarge):
        wire.encode_value(torch.zeros(1000, 1000), max_bytes=1 << 20)
    desc, blobs = wire.encode_value(torch.zeros(1000, 1000), max_bytes=1 << 23)
    with pytest.raises(wire.TooLarge):
        wire.decode(desc, blobs, wire.Budget(1 << 20))
    with pytest.raises(wire.TooLarge):
        wire.encode_value(list(range(wire.MAX_ITEMS + 5)), max_bytes=1 << 30)


@pytest.mark.parametrize("desc,blobs,why", [
    ({"$pickle": "gASV"}, [], "unknown tag"),
    ({"$tensor": {"dtype": "object", "shape": [1], "blob": 0}}, [b"x" * 8], "bad \\$tensor"),
    ({"$tensor": {"dtype": "float32", "shape": [3], "blob": 0}}, [b"\0" * 8], "needs 12 bytes"),
    ({"$tensor": {"dtype": "float32", "shape": [-1], "blob": 0}}, [b""], "bad shape"),
    ({"$tensor": {"dtype": "float32", "shape": [1], "blob": 1}}, [b"\0" * 4], "bad blob reference"),
    ({"$tuple": [{"$tensor": {"dtype": "float32", "shape": [1], "blob": 0}},
                 {"$tensor": {"dtype": "float32", "shape": [1], "blob": 0}}]}, [b"\0" * 4], "bad blob reference"),
    ({"$ndarray": {"dtype": "float32", "shape": [1], "blob": 0, "extra": 1}}, [b"\0" * 4], "bad \\$ndarray|exactly"),
    ({"$float": "1e999"}, [], "bad \\$float"),
    ({"$int": "12x"}, [], "bad \\$int"),
    ({"$dict": [["k"]]}, [], "pair"),
    ({"a": 1, "b": 2}, [], "unexpected dict"),
    ({"$module_inputs": {"init": {}, "state": {}}}, [], "module_inputs"),
])
def test_malformed_values_are_refused(desc, blobs, why):
    with pytest.raises(wire.WireError, match=why):
        wire.decode(desc, blobs, wire.Budget(1 << 20))


def test_deep_nesting_is_refused():
    desc = 1
    for _ in range(wire.MAX_DEPTH + 3):
        desc = [desc]
    with pytest.raises(wire.WireError, match="nested"):
        wire.decode(desc, [], wire.Budget(1 << 20))


def test_malformed_messages_are_refused():
    ok = wire.message_bytes({"op": "x"})
    assert wire.read_message(io.BytesIO(ok), 100)[0]["op"] == "x"
    with pytest.raises(wire.TooLarge):
        wire.read_message(io.BytesIO((10**9).to_bytes(4, "big") + b"{}"), 100)
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.read_message(io.BytesIO((5).to_bytes(4, "big") + b"\xff{}xx"), 100)
    with pytest.raises(wire.WireError, match="'op'"):
        wire.read_message(io.BytesIO(wire.message_bytes({"op": 3})), 100)
    big = wire.message_bytes({"op": "x"}, [b"\0" * 1000])
    with pytest.raises(wire.TooLarge):
        wire.read_message(io.BytesIO(big), 100)
    with pytest.raises(EOFError):
        wire.read_message(io.BytesIO(ok[:-2]), 100)
    with pytest.raises(EOFError):
        wire.read_message(io.BytesIO(b""), 100)
