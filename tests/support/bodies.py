"""Hypothesis strategies for Lead Archive API bodies: valid ones, near misses (a wrong type in
one field, an unknown key, a bad id among good ones), any JSON value, and raw bytes. `bodies`
yields ("json", value) or ("raw", bytes)."""

from __future__ import annotations

from hypothesis import strategies as st

from archiver.idlist import MAX_LEAD_ID

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
lead_id_like = (
    st.integers(1, 45) | st.sampled_from([0, -1, MAX_LEAD_ID, MAX_LEAD_ID + 1, 2**64]) | json_values
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "insert_leads": st.booleans() | json_values,
        "update_leads": st.booleans() | json_values,
        "delete_leads": st.booleans() | json_values,
        "lead_ids": st.lists(st.integers(1, 45), min_size=1, max_size=10)
        | st.lists(lead_id_like, max_size=10)
        | json_values,
        "lead_id": json_values,
    },
)
valid_ish = st.fixed_dictionaries(
    {"lead_ids": st.lists(st.integers(1, 45), min_size=1, max_size=11)},
    optional={k: st.booleans() for k in ("insert_leads", "update_leads", "delete_leads")},
)
bodies = st.one_of(
    st.tuples(st.just("json"), valid_ish),
    st.tuples(st.just("json"), near_valid),
    st.tuples(st.just("json"), json_values),
    st.tuples(st.just("raw"), st.binary(max_size=40)),
)
