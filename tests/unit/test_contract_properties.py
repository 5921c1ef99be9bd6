"""Property tests of the annotation contract (model/annotation.py): every parse path (request,
result, legacy request and result, seal) is total, and a seal verifies for exactly the pod UID,
result key and value it was made for."""

import gc
import json
import time

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ovnvnet.model.annotation import (
    LEGACY_ANNOTATION,
    REQUEST_ANNOTATION,
    RESULT_ANNOTATION,
    SEAL_ANNOTATION,
    AnnotationError,
    InterfaceResult,
    SealError,
    check_seal,
    decode_iface_list,
    decode_legacy_result,
    encode_legacy_result,
    is_legacy_result,
    operator_written,
    parse_legacy_request,
    parse_ovn_network,
    seal,
    sealed_result,
)
from ovnvnet.model.network import Route

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEY = b"s" * 32

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=6)
                           | st.dictionaries(st.text(max_size=12), c, max_size=6), max_leaves=40)
# junk for single fields: small, so the examples go to variety rather than bulk
junk = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6)
legacy_fields = st.fixed_dictionaries({}, optional={
    "ip_address": st.sampled_from(["10.1.0.5/24", "10.1.0.5", "10.1.0.300/24", "", "::1/64"]) | junk,
    "mac_address": st.sampled_from(["0a:58:0a:01:00:05", "01:00:00:00:00:01", "zz", ""]) | junk,
    "gateway_ip": st.sampled_from(["10.1.0.1", "10.1.0", None]) | junk,
    "name": st.sampled_from(["net-a", "", "\ud800"]) | junk,
    "port": st.sampled_from(["zeta_victim_net1", ""]) | junk,
    "mtu": st.sampled_from([1400, 0, -1, 2**64, None, "1400", 1.5, True]),
    "routes": st.sampled_from([[], [{"dst": "10.0.0.0/8", "gw": "10.1.0.1"}], [{}], {}, None]) | junk,
    "unknown": junk,
})
nasty_text = st.sampled_from([
    "NaN", "Infinity", "-Infinity", '{"ip_address": NaN}', '[{"mtu": Infinity}]', "1e999",
    '{"gateway_ip": "\\ud800"}', '"\\udfff"', "\ud800", '{"a": "\udc80"}', "[" * 2000, "{" * 2000,
    '{"a":' * 3000, "[" * 200_000, "x" * 70_000, '{"gateway_ip": 1, ' + '"k": 1, ' * 20000 + "}",
    "[" + "9" * 5000 + "]", "\x00", "{}", "[]", "null",
])
any_text = st.text(max_size=2000) | nasty_text | json_values.map(json.dumps) \
    | legacy_fields.map(json.dumps) | st.lists(legacy_fields, max_size=12).map(json.dumps)
any_value = any_text | json_values | st.binary(max_size=20) | st.sampled_from([None, 1, 1.5, object()])


def total(fn, *args) -> None:
    """Returns something or raises the codec's own error with a short printable message, fast."""
    gc.disable()  # the parser's own cost: not a collection of garbage earlier tests left behind
    start = time.thread_time()  # CPU time: what the parser costs, whatever else the machine runs
    try:
        fn(*args)
    except AnnotationError as e:
        msg = str(e)
        assert msg and len(msg) < 1000
        msg.encode("utf-8")   # always writable as ovnNetworkError, an Event or a CNI error
    elapsed = time.thread_time() - start
    gc.enable()
    assert elapsed < 0.5


@FAST
@given(any_value)
def test_every_decoder_is_total(raw):
    total(parse_ovn_network, raw)
    total(decode_iface_list, raw)
    total(parse_legacy_request, raw, "default-net")
    total(decode_legacy_result, raw)
    assert is_legacy_result(raw) in (True, False)


@FAST
@given(any_value, any_value, st.text(max_size=40))
def test_seal_checks_and_results_are_total(value, sealed, uid):
    total(check_seal, KEY, uid, RESULT_ANNOTATION, value, sealed, "ns/pod")
    for annotations in ({RESULT_ANNOTATION: value, SEAL_ANNOTATION: sealed},
                        {LEGACY_ANNOTATION: value, SEAL_ANNOTATION: sealed},
                        {REQUEST_ANNOTATION: value, RESULT_ANNOTATION: value}):
        total(sealed_result, annotations, uid, KEY, "ns/pod")
        assert isinstance(operator_written(annotations), list)


@FAST
@given(legacy_fields)
def test_legacy_result_decodes_or_says_why(fields):
    raw = json.dumps({"gateway_ip": "10.1.0.1", **fields})
    try:
        res = decode_legacy_result(raw)
    except AnnotationError:
        return
    assert res.default_gateway and res.interface == "legacy"   # never a port name from `port`
    assert res.mtu is None or 0 < res.mtu < 2**16


@FAST
@given(st.text(min_size=1, max_size=40), st.text(max_size=300), st.sampled_from([RESULT_ANNOTATION, LEGACY_ANNOTATION]),
       st.text(min_size=1, max_size=40), st.text(max_size=300))
def test_a_seal_holds_for_exactly_what_it_sealed(uid, value, name, other_uid, other_value):
    sealed = seal(KEY, uid, name, value)
    check_seal(KEY, uid, name, value, sealed, "ns/pod")
    assume((other_uid, other_value) != (uid, value))
    try:
        check_seal(KEY, other_uid, name, other_value, sealed, "ns/pod")
    except SealError:
        pass
    else:
        raise AssertionError("a seal verified for another pod or another value")


octet = st.integers(0, 255)
ipv4 = st.tuples(octet, octet, octet, octet).map(lambda t: ".".join(map(str, t)))
legacy_results = st.builds(
    InterfaceResult, interface=st.just("legacy"), network=st.text(min_size=1, max_size=20),
    ip=ipv4, prefix_length=st.integers(0, 32),
    mac=st.tuples(*[octet] * 6).map(lambda t: ":".join(f"{b:02x}" for b in t)), gateway=ipv4,
    default_gateway=st.just(True), mtu=st.none() | st.integers(576, 9216),
    routes=st.lists(st.builds(Route, dst=st.sampled_from(["10.0.0.0/8", "0.0.0.0/0"]), gw=ipv4),
                    max_size=3).map(tuple))


@settings(max_examples=300, deadline=None)
@given(legacy_results)
def test_legacy_result_round_trip(result):
    assert decode_legacy_result(encode_legacy_result(result, "ns", "pod")) == result
