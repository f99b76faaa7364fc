"""Measurement groups: the raw traces must come back bit for bit, in the documented layout."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lassi_batch.power.trace import Measurement, PowerTrace, Window
from lassi_batch.store.measurement import (
    CHANNELS,
    append_measurement,
    read_measurement,
    read_measurements,
    write_measurement,
)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float64).tobytes()


def assert_same_measurement(a: Measurement, b: Measurement) -> None:
    for name in CHANNELS:
        x, y = getattr(a.trace, name), getattr(b.trace, name)
        assert y.dtype == np.float64
        assert x.shape == y.shape, name
        assert _bits(x) == _bits(y), name  # NaN payloads and -0.0 included
    for name in ("meter", "device", "device_id", "estimate", "notes"):
        assert getattr(a.trace, name) == getattr(b.trace, name), name
    assert a.window == b.window
    assert a.returncode == b.returncode
    assert a.figures.keys() == b.figures.keys()
    for k, v in a.figures.items():
        assert math.isnan(v) and math.isnan(b.figures[k]) or v == b.figures[k], k
    assert a.attrs == b.attrs


def _roundtrip(m: Measurement, path: Path) -> Measurement:
    with h5py.File(path, "w") as f:
        write_measurement(f.create_group("m"), m)
    with h5py.File(path, "r") as f:
        return read_measurement(f["m"])


def realistic(n: int = 10_000, seed: int = 0) -> Measurement:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.009, 0.011, n))
    trace = PowerTrace(
        meter="nvml",
        device="NVIDIA H100 80GB HBM3",
        device_id="GPU-5c0e-uuid",
        t=t,
        power_instant_w=rng.normal(250, 40, n),
        power_average_w=rng.normal(240, 5, n),
        counter_t=t[::10].copy(),
        counter_j=np.cumsum(rng.uniform(2, 3, n // 10)),
        temperature_c=rng.normal(45, 1, n),
        notes=["counter read every 10th sample", "ünïcode note\nwith newline"],
    )
    return Measurement(
        trace=trace,
        window=Window(t[0], t[n // 100], t[n * 8 // 10], t[n * 9 // 10], t[-1]),
        returncode=0,
        figures={"energy_counter_net_j": 290.25, "energy_paper_eq4_j": 131.0, "runtime_s": 1.46},
        attrs={"repeat": 3, "method": "counter", "settle": {"idle_w": 74.0, "reached": True}},
    )


def test_realistic_trace_round_trip_is_bitwise(tmp_path: Path) -> None:
    m = realistic()
    back = _roundtrip(m, tmp_path / "m.h5")
    assert_same_measurement(m, back)
    assert back.attrs["repeat"] == 3 and isinstance(back.attrs["repeat"], int)


def test_layout_matches_schema(tmp_path: Path) -> None:
    """Downstream tools may read these names directly; pin them."""
    m = realistic(n=2000)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        write_measurement(f.create_group("m"), m)
    with h5py.File(path, "r") as f:
        g = f["m"]
        attrs = set(g.attrs.keys())
        for name in ("meter", "device", "device_id", "estimate", "returncode", "repeat", "notes_json",
                     "t_idle_start", "t_launch", "t_exit", "t_settled", "t_end",
                     "fig_energy_counter_net_j", "fig_runtime_s", "attr_method", "attr_settle_json"):
            assert name in attrs, name
        assert set(g.keys()) == set(CHANNELS)
        assert g["power_instant_w"].attrs["unit"] == b"W"
        assert g["counter_j"].attrs["unit"] == b"J"
        assert g["t"].dtype == np.float64
        assert g.attrs["fig_runtime_s"] == 1.46


def test_empty_channels_none_returncode_and_no_repeat(tmp_path: Path) -> None:
    trace = PowerTrace(meter="estimate", device="cpu", estimate=True, t=np.array([0.0, 1.0]),
                       power_instant_w=np.array([10.0, 11.0]))
    m = Measurement(trace=trace, window=Window(0, 0.1, 0.9, 1.0, 1.0), returncode=None)
    back = _roundtrip(m, tmp_path / "m.h5")
    assert_same_measurement(m, back)
    assert back.returncode is None
    assert back.trace.counter_j.size == 0 and back.trace.temperature_c.size == 0
    assert back.attrs == {} and back.figures == {}
    assert back.trace.estimate is True


def test_awkward_attrs_survive(tmp_path: Path) -> None:
    """None, nested values, NUL in text, a name already ending in _json, huge ints."""
    m = realistic(n=10)
    m.attrs = {"repeat": None, "none": None, "nul": "a\x00b", "x_json": "plain", "big": 2**70,
               "flag": False, "lst": [1, "two", None], "neg": -7, "f": 0.1}
    m.returncode = -9
    m.figures["missing"] = None  # type: ignore[assignment]  # an uncomputable figure -> NaN
    back = _roundtrip(m, tmp_path / "m.h5")
    assert back.attrs == m.attrs
    assert back.returncode == -9
    assert math.isnan(back.figures["missing"])


def test_numbered_children_read_in_order(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        parent = f.create_group("measurements")
        for r in range(12):  # past 10: order must be numeric, not "1, 10, 11, 2"
            m = realistic(n=20, seed=r)
            m.attrs["repeat"] = r
            assert append_measurement(parent, m) == r
        parent.create_group("not-a-measurement")
    with h5py.File(path, "r") as f:
        got = read_measurements(f["measurements"])
    assert [m.attrs["repeat"] for m in got] == list(range(12))
    assert_same_measurement(got[7], _seeded(7))


def test_header_only_read_has_every_figure_and_marker_but_no_samples(tmp_path: Path) -> None:
    m = realistic(n=5_000, seed=3)
    m.attrs.update(phase="confirm", confirm_side="B")
    with h5py.File(tmp_path / "m.h5", "w") as f:
        append_measurement(f.create_group("measurements"), m)
        append_measurement(f["measurements"], realistic(n=10, seed=4))
    with h5py.File(tmp_path / "m.h5", "r") as f:
        full, head = read_measurements(f["measurements"]), read_measurements(f["measurements"], traces=False)
    assert len(head) == 2 and all(getattr(h.trace, name).size == 0 for h in head for name in CHANNELS)
    assert full[0].trace.t.size == 5_000
    for a, b in zip(full, head):  # everything but the samples is the same
        assert (b.trace.meter, b.trace.device_id, b.trace.notes) == (a.trace.meter, a.trace.device_id, a.trace.notes)
        assert b.window == a.window and b.returncode == a.returncode and b.attrs == a.attrs
        assert b.figures.keys() == a.figures.keys()
        assert all(math.isnan(v) and math.isnan(b.figures[k]) or v == b.figures[k] for k, v in a.figures.items())


def _seeded(r: int) -> Measurement:
    m = realistic(n=20, seed=r)
    m.attrs["repeat"] = r
    return m


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
channel = hnp.arrays(np.float64, st.integers(0, 2100), elements=floats)
names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80),
                    st.floats(allow_nan=False), st.text(max_size=50))
attr_values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(names, scalars, max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chans=st.fixed_dictionaries({k: channel for k in CHANNELS}),
    meta=st.tuples(st.text(max_size=40), st.text(max_size=40), st.booleans()),
    window=st.lists(floats, min_size=5, max_size=5),
    rc=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    figures=st.dictionaries(names, st.floats(allow_nan=False), max_size=6),
    attrs=st.dictionaries(names, attr_values, max_size=6),
    notes=st.lists(st.text(max_size=30), max_size=3),
)
def test_round_trip_property(chans, meta, window, rc, figures, attrs, notes) -> None:
    trace = PowerTrace(meter=meta[0], device=meta[1], estimate=meta[2], notes=notes, **chans)
    # attribute strings replace NUL; pick text a device name can hold
    trace.meter = trace.meter.replace("\x00", "")
    trace.device = trace.device.replace("\x00", "")
    m = Measurement(trace=trace, window=Window(*window), returncode=rc, figures=figures, attrs=attrs)
    with tempfile.TemporaryDirectory() as d:
        back = _roundtrip(m, Path(d) / "m.h5")
    for name in CHANNELS:
        assert _bits(getattr(m.trace, name)) == _bits(getattr(back.trace, name))
    assert [getattr(back.window, k) for k in ("t_idle_start", "t_launch", "t_exit", "t_settled", "t_end")] \
        == pytest.approx(window, nan_ok=True)
    assert back.returncode == rc
    assert back.figures == figures
    assert back.trace.notes == notes
    assert back.trace.meter == trace.meter and back.trace.device == trace.device
    # JSON turns tuples into lists; nothing else may change
    assert back.attrs == attrs
