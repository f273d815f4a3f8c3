"""The option objects of archiver.options: built from typed values, refuse what they can check
alone, keep their defaults, and cannot be changed once built."""

from __future__ import annotations

import dataclasses

import pytest

from archiver import config
from archiver.errors import BadInput
from archiver.options import (
    RestoreArgs,
    ResumeArgs,
    RunArgs,
    SearchArgs,
    SelectionArgs,
    StepsArgs,
    TuningArgs,
    VerifyArgs,
)
from archiver.selection import Criteria
from archiver.steps import Flags


def frozen(obj: object, field: str, value: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, value)


# --- SelectionArgs -------------------------------------------------------------------------


def test_selection_of_each_kind() -> None:
    ids = SelectionArgs(lead_ids=("1,2", "3"))
    assert ids.lead_ids == ("1,2", "3") and ids.criteria().empty and ids.column is None
    by_file = SelectionArgs(ids_file="ids.csv", ids_column=("id",))
    assert by_file.column == "id"
    crit = SelectionArgs(list_ids=(" 101",), statuses=("NI",), entry_before="365d")
    assert crit.criteria() == Criteria(list_ids=(101,), statuses=("NI",), entry_before="365d")
    frozen(ids, "lead_ids", ("4",))


def test_list_flags_take_commas_and_repetition_alike() -> None:
    commas = SelectionArgs(list_ids=("101,102",), campaigns=("A,B",), statuses=("NI, DNC",))
    repeated = SelectionArgs(list_ids=("101", "102"), campaigns=("A", "B"), statuses=("NI", "DNC"))
    assert commas.criteria() == repeated.criteria()
    assert commas.criteria() == Criteria(
        list_ids=(101, 102), campaigns=("A", "B"), statuses=("NI", "DNC")
    )
    with pytest.raises(BadInput, match=r"^invalid --list-id '': list ids are whole numbers$"):
        SelectionArgs(list_ids=("101,",))
    with pytest.raises(BadInput, match=r"^--campaign 'A,,B' holds an empty value"):
        SelectionArgs(campaigns=("A,,B",))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "nothing selected: give lead ids, --ids-file, --request or criteria"),
        ({"ids_column": ("id",)}, "nothing selected"),
        ({"lead_ids": ("1",), "list_ids": ("5",)}, "give one kind of selection"),
        ({"ids_file": "a", "request_path": "b"}, "give one kind of selection"),
        ({"list_ids": ("x",)}, "invalid --list-id 'x': list ids are whole numbers"),
        ({"list_ids": ("²",)}, "invalid --list-id '²'"),
        (
            {"ids_file": "a", "ids_column": ("x", "y")},
            "--ids-column is given 2 times; name one column of lead ids",
        ),
        (
            {"lead_ids": ("1",), "ids_column": ("x",)},
            "--ids-column names the column of an --ids-file; give --ids-file too",
        ),
    ],
)
def test_selection_refusals(kw: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput) as refused:
        SelectionArgs(**kw)  # type: ignore[arg-type]
    assert str(refused.value).startswith(message)


def test_selection_list_ids_are_checked_before_the_kinds() -> None:
    with pytest.raises(BadInput, match="invalid --list-id"):
        SelectionArgs(lead_ids=("1",), list_ids=("x",))


def test_a_request_body_names_its_own_ids_so_ids_column_is_not_checked() -> None:
    args = SelectionArgs(request_path="-", ids_column=("a", "b"))
    assert args.request_path == "-"


# --- StepsArgs -----------------------------------------------------------------------------


def test_steps_default_to_every_step_and_a_request_can_only_turn_steps_off() -> None:
    steps = StepsArgs()
    assert steps.flags == Flags(True, True, True)
    assert steps.allowed_by(None) is steps
    assert steps.allowed_by(Flags(False, True, False)).flags == Flags(False, True, False)
    assert StepsArgs(insert=False).allowed_by(Flags()).flags == Flags(False, True, True)
    assert StepsArgs.of(Flags(True, False, True)) == StepsArgs(True, False, True)
    frozen(steps, "delete", False)


# --- RestoreArgs ---------------------------------------------------------------------------


def test_restore_overrides() -> None:
    assert RestoreArgs().overrides == {}
    assert RestoreArgs(reset=True, status="NEW", called_count=0).overrides == {
        "called_since_last_reset": "N",
        "status": "NEW",
        "called_count": 0,
    }
    frozen(RestoreArgs(), "reset", True)


@pytest.mark.parametrize("status", ["", "A\x00", "\n"])
def test_restore_refuses_a_status_that_is_not_printable(status: str) -> None:
    with pytest.raises(BadInput) as refused:
        RestoreArgs(status=status)
    assert str(refused.value) == f"--set-status {status!r}: a VICIdial status is printable text"


# --- RunArgs -------------------------------------------------------------------------------


def test_run_defaults() -> None:
    run = RunArgs()
    assert (run.job_name, run.dry_run, run.report, run.ignore_window) == (None, False, None, False)
    assert (run.metrics_file, run.admin_log, run.user) == (None, False, None)
    assert RunArgs(job_name="nightly", dry_run=True).job_name == "nightly"
    frozen(run, "dry_run", True)


# --- TuningArgs ----------------------------------------------------------------------------


def test_tuning_parses_durations_and_applies_over_the_settings() -> None:
    base = config.Settings()
    assert TuningArgs().apply(base) == base
    tuning = TuningArgs(
        chunk_size=50,
        max_runtime="2h",
        sleep="1.5",
        max_wait="30m",
        max_replica_lag="10s",
        sleep_coef=0.5,
        chunk_time=200,
        safe_auto_increment=False,
        no_guard=("hopper", "callbacks"),
    )
    assert tuning.seconds == {
        "sleep": 1.5,
        "max_replica_lag": 10.0,
        "max_wait": 1800.0,
        "max_runtime": 7200.0,
    }
    s = tuning.apply(base)
    assert (s.chunk_size, s.max_runtime, s.delete_batch) == (50, 7200.0, base.delete_batch)
    assert (s.throttle.sleep, s.throttle.sleep_coef, s.throttle.max_wait) == (1.5, 0.5, 1800.0)
    assert (s.throttle.max_replica_lag, s.throttle.chunk_time_ms) == (10.0, 200)
    assert s.guards.safe_auto_increment is False
    assert (s.guards.hopper, s.guards.callbacks, s.guards.auto_calls) == (False, False, True)
    frozen(tuning, "chunk_size", 1)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"sleep": "soon"}, "--sleep: expected a duration such as 90s"),
        ({"max_wait": "-1"}, "--max-wait: expected a duration"),
        ({"max_replica_lag": "1y"}, "--max-replica-lag: expected a duration"),
        ({"max_runtime": "2 hours"}, "--max-runtime: expected a duration"),
    ],
)
def test_tuning_refuses_a_bad_duration_as_it_is_built(kw: dict[str, str], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        TuningArgs(**kw)  # type: ignore[arg-type]


def test_tuning_checks_the_settings_as_a_whole_when_applied() -> None:
    tuning = TuningArgs(chunk_size=501)  # built: the range is the settings' to check
    with pytest.raises(BadInput, match="chunk size must be between 1 and 500, got 501"):
        tuning.apply(config.Settings())


# --- VerifyArgs ----------------------------------------------------------------------------


def test_verify_list_limit_defaults_by_reader() -> None:
    assert VerifyArgs().limit == 20  # a person reading
    assert VerifyArgs(as_json=True).limit == 1000  # a program reading
    assert VerifyArgs(as_json=True, list_limit=0).limit == 0
    with pytest.raises(BadInput, match="--list-limit must be 0 or more, got -1"):
        VerifyArgs(list_limit=-1)
    frozen(VerifyArgs(), "as_json", True)


# --- SearchArgs ----------------------------------------------------------------------------


def test_search_by_phone_or_code_in_a_list_or_campaign() -> None:
    phones = SearchArgs(phones="3125551234,3125550000")
    assert (phones.text, phones.scope(), phones.records, phones.header) == (
        "3125551234,3125550000",
        None,
        1000,
        False,
    )
    codes = SearchArgs(codes="V1,V2", list_id="101")
    assert codes.text == "V1,V2" and codes.scope() == Criteria(list_ids=(101,))
    assert SearchArgs(phones="1", campaign="SALES").scope() == Criteria(campaigns=("SALES",))
    frozen(phones, "archived", True)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "give phone numbers or --vendor-lead-code CODES (one of the two)"),
        ({"phones": "1", "codes": "2"}, "give phone numbers or --vendor-lead-code CODES"),
        ({"phones": "1", "list_id": "1", "campaign": "C"}, "give --list-id or --campaign, not"),
        ({"phones": "1", "list_id": "1a"}, "invalid --list-id '1a'"),
    ],
)
def test_search_refusals(kw: dict[str, str], message: str) -> None:
    with pytest.raises(BadInput) as refused:
        SearchArgs(**kw)  # type: ignore[arg-type]
    assert str(refused.value).startswith(message)


# --- ResumeArgs ----------------------------------------------------------------------------


def test_resume_parses_max_runtime() -> None:
    assert ResumeArgs("7").max_runtime_s is None
    assert ResumeArgs("7", max_runtime="").max_runtime_s is None  # the configured one stays
    assert ResumeArgs("nightly", max_runtime="90m").max_runtime_s == 5400.0
    with pytest.raises(BadInput, match="--max-runtime: expected a duration"):
        ResumeArgs("7", max_runtime="later")
    frozen(ResumeArgs("7"), "ref", "8")
