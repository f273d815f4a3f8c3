"""schema.lossless_problem and drift: which archive column can hold every live value byte-exactly.

No database: columns are built the way `schema.reflect` builds them from information_schema.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from archiver.errors import BadInput
from archiver.schema import Column, Table, check_overrides, drift, lossless_problem, sync_ddl

_INT_PRECISION = {"tinyint": 3, "smallint": 5, "mediumint": 7, "int": 10, "bigint": 19}
_TEXT_BYTES = {"tinytext": 255, "text": 65535, "mediumtext": 16777215, "longtext": 4294967295}


def col(
    column_type: str,
    name: str = "c",
    *,
    nullable: bool = True,
    charset: str | None = None,
    **over: Any,
) -> Column:
    """A Column as information_schema describes `column_type` (e.g. "varchar(30)",
    "int(9) unsigned", "decimal(4,2)", "enum('Y','N')")."""
    ct = column_type.lower()
    data_type = re.match(r"[a-z]+", ct).group(0)  # type: ignore[union-attr]
    args = re.search(r"\(([^)]*)\)", ct)
    char_len = num_precision = num_scale = dt_precision = None
    is_text = data_type in ("char", "varchar", "enum", "set", *_TEXT_BYTES)
    if data_type in ("char", "varchar"):
        char_len = int(args.group(1)) if args else 1
    elif data_type in _TEXT_BYTES:
        char_len = _TEXT_BYTES[data_type]
    elif data_type in ("enum", "set"):
        char_len = max(len(v) for v in re.findall(r"'([^']*)'", ct))
    elif data_type in _INT_PRECISION:
        num_precision, num_scale = _INT_PRECISION[data_type], 0
    elif data_type == "decimal":
        p, s = [*args.group(1).split(","), "0"][:2] if args else ("10", "0")
        num_precision, num_scale = int(p), int(s)
    elif data_type in ("datetime", "timestamp", "time"):
        dt_precision = int(args.group(1)) if args else 0
    if is_text and charset is None:
        charset = "utf8mb3"
    fields: dict[str, Any] = dict(
        name=name,
        position=1,
        data_type=data_type,
        column_type=ct,
        nullable=nullable,
        default=None,
        extra="",
        charset=charset if is_text else None,
        collation=f"{charset}_unicode_ci" if is_text else None,
        char_len=char_len,
        num_precision=num_precision,
        num_scale=num_scale,
        dt_precision=dt_precision,
    )
    fields.update(over)
    return Column(**fields)


def check(src: str, dst: str, **kw: Any) -> str | None:
    src_kw = {k[4:]: v for k, v in kw.items() if k.startswith("src_")}
    dst_kw = {k[4:]: v for k, v in kw.items() if k.startswith("dst_")}
    return lossless_problem(col(src, **src_kw), col(dst, **dst_kw))


# --- integers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("smallint(5)", "smallint(5)"),
        ("smallint(5)", "int(11)"),
        ("smallint(5)", "bigint(20)"),
        ("tinyint(4)", "mediumint(9)"),
        ("int(9) unsigned", "int(10) unsigned"),  # the display width means nothing
        ("int(9) unsigned", "bigint(20) unsigned"),
        ("smallint(5) unsigned", "int(11)"),  # unsigned fits a signed type one size up
        ("int(10) unsigned", "bigint(20)"),
        ("bigint(14) unsigned", "bigint(20) unsigned"),
    ],
)
def test_int_widening_is_lossless(src: str, dst: str) -> None:
    assert check(src, dst) is None


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("int(11)", "smallint(5)"),
        ("bigint(14) unsigned", "int(10) unsigned"),
        ("smallint(5)", "tinyint(4)"),
        ("int(10) unsigned", "int(11)"),  # 4294967295 does not fit a signed INT
        ("smallint(5)", "smallint(5) unsigned"),  # rank -3 does not fit unsigned
        ("smallint(5)", "bigint(20) unsigned"),  # signed never fits unsigned, however wide
        ("int(11)", "decimal(20,0)"),
        ("int(11)", "varchar(20)"),
    ],
)
def test_int_narrowing_or_sign_change_is_refused(src: str, dst: str) -> None:
    problem = check(src, dst)
    assert problem == f"is {src} in the source but {dst} in the target"


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("smallint(5) unsigned zerofill", "smallint(5) unsigned zerofill"),
        ("smallint(5) unsigned zerofill", "int(5) unsigned zerofill"),  # pads to the same 5
        ("decimal(6,2) unsigned zerofill", "decimal(6,2) unsigned zerofill"),
        ("decimal(6,2) unsigned", "decimal(6,2)"),
    ],
)
def test_zerofill_padding_to_the_same_width_is_lossless(src: str, dst: str) -> None:
    assert check(src, dst) is None


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("smallint(5) unsigned zerofill", "smallint(5) unsigned"),  # '00007' against '7'
        ("smallint(5) unsigned", "smallint(5) unsigned zerofill"),
        ("smallint(5) unsigned zerofill", "smallint(6) unsigned zerofill"),  # '000007'
        ("smallint(5) unsigned zerofill", "int(10) unsigned zerofill"),
        ("decimal(6,2) unsigned zerofill", "decimal(8,2) unsigned zerofill"),
        ("decimal(6,2) unsigned zerofill", "decimal(6,2)"),
    ],
)
def test_zerofill_on_one_side_or_another_width_is_refused(src: str, dst: str) -> None:
    problem = check(src, dst)
    assert problem is not None
    assert problem.startswith(f"is {src} in the source but {dst} in the target: ZEROFILL pads")


def test_decimal_signed_into_unsigned_is_refused() -> None:
    assert check("decimal(6,2)", "decimal(6,2) unsigned") == (
        "is decimal(6,2) in the source but decimal(6,2) unsigned in the target"
    )


# --- decimals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("decimal(4,2)", "decimal(4,2)"),
        ("decimal(4,2)", "decimal(6,2)"),
        ("decimal(4,2)", "decimal(10,2)"),
    ],
)
def test_decimal_with_same_scale_and_more_integer_digits_is_lossless(src: str, dst: str) -> None:
    assert check(src, dst) is None


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("decimal(4,2)", "decimal(5,3)"),  # a different scale prints -5.000, not -5.00
        ("decimal(4,2)", "decimal(4,1)"),
        ("decimal(4,2)", "decimal(3,2)"),  # -12.50 does not fit
        ("decimal(6,2)", "decimal(5,1)"),
        ("decimal(4,2)", "double"),
        ("decimal(4,2)", "varchar(10)"),
    ],
)
def test_decimal_scale_change_or_narrowing_is_refused(src: str, dst: str) -> None:
    assert check(src, dst) == f"is {src} in the source but {dst} in the target"


# --- enums ---------------------------------------------------------------------------------

LIVE_CSLR = "enum('y','n','y1','y2','y3','y4','y5','y6','y7','y8','y9','y10','d')"


@pytest.mark.parametrize(
    "dst",
    [
        LIVE_CSLR,
        "enum('d','y10','y9','y8','y7','y6','y5','y4','y3','y2','y1','n','y')",  # any order
        "enum('y','n','y1','y2','y3','y4','y5','y6','y7','y8','y9','y10','d','x')",  # a superset
        "varchar(3)",  # the longest value is 'y10'
        "varchar(10)",
    ],
)
def test_enum_into_superset_or_wide_enough_string_is_lossless(dst: str) -> None:
    assert check(LIVE_CSLR, dst) is None


def test_enum_missing_a_value_is_refused_and_names_it() -> None:
    # The archive made before 2021 lacks 'D' (vicidial-facts.md).
    old = "enum('y','n','y1','y2','y3','y4','y5','y6','y7','y8','y9','y10')"
    assert check(LIVE_CSLR, old) == "lacks ENUM value(s) 'd' in the target"
    assert check("enum('m','f','u')", "enum('m')") == "lacks ENUM value(s) 'f', 'u' in the target"


@pytest.mark.parametrize("dst", ["varchar(2)", "char(2)", "int(11)", "set('y','n')"])
def test_enum_into_narrow_string_or_other_type_is_refused(dst: str) -> None:
    problem = check(LIVE_CSLR, dst)
    assert problem is not None
    assert dst in problem


@pytest.mark.parametrize(
    ("dst", "ok"),
    [("varchar(2)", False), ("varchar(4)", False), ("varchar(5)", True), ("text", True)],
)
def test_set_into_string_needs_room_for_every_label_at_once(dst: str, ok: bool) -> None:
    # 'aa,bb' is one value of SET('aa','bb'): 5 characters, not 2.
    assert (check("set('aa','bb')", dst) is None) == ok


def test_enum_into_enum_of_a_narrower_charset_is_refused() -> None:
    problem = check("enum('a','b')", "enum('a','b')", src_charset="utf8mb4", dst_charset="utf8mb3")
    assert problem is not None and "character set utf8mb4" in problem


# --- strings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("varchar(30)", "varchar(30)"),
        ("varchar(30)", "varchar(50)"),
        ("varchar(255)", "text"),
        ("varchar(255)", "mediumtext"),
        ("varchar(85)", "tinytext"),  # 85 × 3 bytes = 255: still fits
        ("text", "text"),
        ("text", "longtext"),
        ("char(2)", "char(2)"),
    ],
)
def test_string_of_equal_or_greater_capacity_is_lossless(src: str, dst: str) -> None:
    assert check(src, dst) is None


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("varchar(30)", "varchar(20)"),
        ("varchar(100)", "varchar(99)"),
        ("varchar(255)", "char(255)"),  # CHAR drops trailing spaces: 'Smith ' comes back 'Smith'
        ("char(10)", "varchar(10)"),
        ("varchar(20)", "int(11)"),
        ("text", "varchar(255)"),
        ("mediumtext", "text"),
    ],
)
def test_narrower_or_other_kind_of_string_is_refused(src: str, dst: str) -> None:
    problem = check(src, dst)
    assert problem is not None
    assert f"is {src} in the source but" in problem and dst in problem


@pytest.mark.parametrize(
    ("src", "dst", "src_cs", "dst_cs"),
    [
        ("varchar(255)", "tinytext", "utf8mb3", "utf8mb3"),  # 255 'é' = 510 bytes
        ("varchar(86)", "tinytext", "utf8mb3", "utf8mb3"),  # 258 bytes
        ("varchar(255)", "tinytext", "latin1", "utf8mb4"),  # 'é' grows to 2 bytes
        ("varchar(20000)", "text", "utf8mb4", "utf8mb4"),  # 80000 bytes
        ("text", "text", "latin1", "utf8mb4"),
    ],
)
def test_text_target_is_measured_in_bytes(src: str, dst: str, src_cs: str, dst_cs: str) -> None:
    problem = check(src, dst, src_charset=src_cs, dst_charset=dst_cs)
    assert problem is not None
    assert "bytes" in problem or "character set" in problem


@pytest.mark.parametrize(
    ("src_cs", "dst_cs"),
    [
        ("utf8mb3", "utf8mb4"),
        ("utf8", "utf8mb4"),
        ("latin1", "utf8mb4"),
        ("ascii", "utf8mb4"),
        ("utf8mb4", "utf8mb4"),
        ("utf8mb3", "utf8mb3"),
        ("latin1", "latin1"),
    ],
)
def test_charset_that_holds_every_character_is_allowed(src_cs: str, dst_cs: str) -> None:
    assert check("varchar(30)", "varchar(30)", src_charset=src_cs, dst_charset=dst_cs) is None


@pytest.mark.parametrize(
    ("src_cs", "dst_cs"),
    [
        ("utf8mb4", "utf8mb3"),  # emoji do not fit 3-byte UTF-8
        ("utf8mb4", "utf8"),
        ("utf8mb4", "latin1"),
        ("utf8mb3", "latin1"),
        ("latin1", "ascii"),
        ("utf8mb3", "ucs2"),
    ],
)
def test_charset_that_cannot_hold_every_character_is_refused(src_cs: str, dst_cs: str) -> None:
    problem = check("varchar(30)", "varchar(30)", src_charset=src_cs, dst_charset=dst_cs)
    assert problem == (
        f"is character set {src_cs} in the source but {dst_cs} in the target, "
        "which cannot hold every character"
    )


# --- NULL, dates, anything else --------------------------------------------------------------


def test_nullable_into_not_null_is_refused_and_the_reverse_allowed() -> None:
    assert lossless_problem(col("varchar(30)"), col("varchar(30)", nullable=False)) == (
        "is NULL-able in the source but NOT NULL in the target"
    )
    assert lossless_problem(col("varchar(30)", nullable=False), col("varchar(30)")) is None


@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [
        ("datetime", "datetime", True),
        ("date", "date", True),
        ("timestamp", "timestamp", True),
        ("timestamp", "datetime", False),  # the tool's session is UTC, VICIdial's is local
        ("datetime", "timestamp", False),  # and 1969 and 2038+ do not fit
        ("date", "datetime", False),  # '1980-05-17' would come back '1980-05-17 00:00:00'
        ("datetime", "date", False),
        ("datetime", "datetime(3)", False),  # '… 00:00:00.000' is other bytes
        ("datetime(3)", "datetime", False),
        ("time", "time", True),
        ("double", "double", True),
        ("double", "float", False),
    ],
)
def test_temporal_and_other_types(src: str, dst: str, ok: bool) -> None:
    problem = check(src, dst)
    assert (problem is None) == ok, problem


# --- drift and sync over whole tables --------------------------------------------------------


def table(name: str, *cols: Column, pk: tuple[str, ...] = ("lead_id",)) -> Table:
    numbered = tuple(Column(**{**c.__dict__, "position": i}) for i, c in enumerate(cols, 1))
    return Table(name, "MyISAM", "utf8mb3_unicode_ci", numbered, pk, None)


def test_drift_reports_blocking_items_and_warnings() -> None:
    live = table(
        "vicidial_list",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("varchar(30)", "first_name"),
        col("smallint(5)", "rank", nullable=False),
        col("varchar(20)", "owner"),
    )
    archive = table(
        "vicidial_list_archive",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("smallint(5)", "rank", nullable=False),
        col("varchar(20)", "first_name"),
        col("varchar(5)", "extra"),
    )
    report = drift(live, archive)
    assert len(report.blocking) == 2
    assert report.blocking[0].startswith(
        "column 'first_name' is varchar(30) in the source but narrower varchar(20) in the target"
    )
    assert report.blocking[1].startswith(
        "column 'owner' of vicidial_list is missing in vicidial_list_archive"
    )
    assert "column 'extra' exists only in vicidial_list_archive" in report.warnings
    assert "column order differs between vicidial_list and vicidial_list_archive" in report.warnings


def test_drift_without_primary_key_is_blocking() -> None:
    live = table("vicidial_list", col("int(9) unsigned", "lead_id", nullable=False))
    archive = table(
        "vicidial_list_archive", col("int(9) unsigned", "lead_id", nullable=False), pk=()
    )
    assert drift(live, archive).blocking == [
        "vicidial_list_archive has no PRIMARY KEY (lead_id); run `vicidial-archiver schema sync` "
        "to see the ALTER TABLE that fixes it"
    ]


def test_identical_tables_have_no_drift_and_no_sync() -> None:
    cols = (col("int(9) unsigned", "lead_id", nullable=False), col("varchar(30)", "first_name"))
    live, archive = table("vicidial_list", *cols), table("vicidial_list_archive", *cols)
    assert drift(live, archive).clean
    assert sync_ddl(live, archive) == []


def test_sync_widens_and_adds_and_never_narrows() -> None:
    live = table(
        "vicidial_list",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("varchar(30)", "first_name"),
        col(LIVE_CSLR, "called_since_last_reset"),
        col("varchar(20)", "owner"),
        col("varchar(10)", "postal_code"),
    )
    archive = table(
        "vicidial_list_archive",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("varchar(20)", "first_name"),
        col("enum('y','n','x')", "called_since_last_reset"),
        col("varchar(50)", "postal_code"),
    )
    (stmt,) = sync_ddl(live, archive)
    assert stmt.startswith("ALTER TABLE `vicidial_list_archive` ")
    assert "MODIFY COLUMN `first_name` varchar(30)" in stmt
    assert "ADD COLUMN `owner` varchar(20)" in stmt and "AFTER `called_since_last_reset`" in stmt
    # The archive's extra ENUM value 'x' is kept; its wider postal_code is left alone.
    assert "'d','x')" in stmt
    assert "postal_code" not in stmt


def test_sync_pads_like_live_and_keeps_a_wider_archive_integer() -> None:
    live = table(
        "vicidial_list",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("smallint(5) unsigned zerofill", "called_count"),
        col("tinyint(3) unsigned zerofill", "attempts"),
    )
    archive = table(
        "vicidial_list_archive",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("smallint(5) unsigned", "called_count"),
        col("int(10) unsigned", "attempts"),
    )
    (stmt,) = sync_ddl(live, archive)
    assert "MODIFY COLUMN `called_count` smallint(5) unsigned zerofill NULL" in stmt
    assert "MODIFY COLUMN `attempts` int(3) unsigned zerofill NULL" in stmt


def test_sync_turns_a_datetime_archive_column_back_into_timestamp() -> None:
    live = table(
        "vicidial_list",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("timestamp", "modify_date", nullable=False),
    )
    archive = table(
        "vicidial_list_archive",
        col("int(9) unsigned", "lead_id", nullable=False),
        col("datetime", "modify_date", nullable=False),
    )
    assert (
        drift(live, archive)
        .blocking[0]
        .startswith("column 'modify_date' is timestamp in the source but datetime in the target: ")
    )
    assert sync_ddl(live, archive) == [
        "ALTER TABLE `vicidial_list_archive` MODIFY COLUMN `modify_date` timestamp NOT NULL"
    ]


# --- restore options -------------------------------------------------------------------------


def live_table(status: str = "varchar(6)", charset: str = "utf8mb3") -> Table:
    return Table(
        "vicidial_list",
        "MyISAM",
        "utf8mb3_unicode_ci",
        (
            col("int(9) unsigned", "lead_id", nullable=False),
            col(status, "status", charset=charset),
            col("smallint(5) unsigned", "called_count"),
            Column(
                **{
                    **col("enum('Y','N','D')", "called_since_last_reset").__dict__,
                    "column_type": "enum('Y','N','D')",
                }
            ),
        ),
        ("lead_id",),
        None,
    )


@pytest.mark.parametrize(
    ("overrides", "charset"),
    [
        ({"status": "NEW", "called_count": 0, "called_since_last_reset": "N"}, "utf8mb3"),
        ({"status": "ÄÉ€√", "called_count": 65535}, "utf8mb3"),
        ({"status": "N\U0001f600W"}, "utf8mb4"),
        ({"status": "café€"}, "latin1"),  # MySQL's latin1 is cp1252
    ],
)
def test_overrides_the_column_holds_pass(overrides: dict[str, Any], charset: str) -> None:
    check_overrides(live_table(charset=charset), overrides)


@pytest.mark.parametrize(
    ("overrides", "charset", "message"),
    [
        (
            {"status": "N\U0001f600W"},
            "utf8mb3",
            "--set-status 'N\U0001f600W': vicidial_list.status is varchar(6), character set "
            "utf8mb3, which cannot hold '\U0001f600': use characters of up to 3 bytes in UTF-8 "
            "(no emoji)",
        ),
        (
            {"status": "TOOLONGX"},
            "utf8mb3",
            "--set-status 'TOOLONGX': vicidial_list.status is varchar(6), which holds at most 6 "
            "characters",
        ),
        (
            {"status": "ĀB"},
            "latin1",
            "--set-status 'ĀB': vicidial_list.status is varchar(6), character set latin1, which "
            "cannot hold 'Ā': use Western European (cp1252) characters",
        ),
        (
            {"status": "A\udcffB"},  # an argument that was not UTF-8 at all
            "utf8mb4",
            "--set-status 'A\\udcffB': vicidial_list.status is varchar(6), character set utf8mb4, "
            "which cannot hold '\\udcff': use valid UTF-8 text",
        ),
        (
            {"called_count": 65536},
            "utf8mb3",
            "--set-called-count 65536: vicidial_list.called_count is smallint(5) unsigned, which "
            "takes a whole number from 0 to 65535",
        ),
        (
            {"called_count": -1},
            "utf8mb3",
            "--set-called-count -1: vicidial_list.called_count is smallint(5) unsigned, which "
            "takes a whole number from 0 to 65535",
        ),
        (
            {"called_since_last_reset": "n"},
            "utf8mb3",
            "--reset-called (sets called_since_last_reset to 'n'): "
            "vicidial_list.called_since_last_reset is enum('Y','N','D'), which does not hold "
            "'n': use one of 'Y', 'N', 'D'",
        ),
    ],
)
def test_overrides_the_column_cannot_hold_are_refused(
    overrides: dict[str, Any], charset: str, message: str
) -> None:
    with pytest.raises(BadInput) as exc:
        check_overrides(live_table(charset=charset), overrides)
    assert str(exc.value) == message


def test_override_char_column_drops_trailing_spaces() -> None:
    with pytest.raises(BadInput, match="drops trailing spaces"):
        check_overrides(live_table(status="char(6)"), {"status": "NEW "})


@pytest.mark.parametrize(
    ("dst", "ok"),
    [
        ("set('x','y','z')", True),
        ("set('w','x','y','z')", True),  # labels added anywhere, the order kept
        ("set('x','w','y','z','v')", True),
        ("set('y','x','z')", False),  # 'x,y' would be stored 'y,x'
        ("set('z','y','x')", False),
    ],
)
def test_set_into_set_keeps_its_labels_order(dst: str, ok: bool) -> None:
    problem = check("set('x','y','z')", dst)
    assert (problem is None) == ok, problem
    if not ok:
        assert problem == (
            f"is set('x','y','z') in the source but {dst} in the target, which lists a "
            "value's labels in another order"
        )


def _bytes_col(column_type: str) -> Column:
    m = re.search(r"\((\d+)\)", column_type)
    return col(column_type, char_len=int(m.group(1)) if m else None)


@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [
        ("varbinary(20)", "varbinary(40)", True),  # no padding: the same bytes
        ("varbinary(20)", "varbinary(20)", True),
        ("varbinary(40)", "varbinary(20)", False),
        ("varbinary(255)", "tinyblob", True),
        ("varbinary(256)", "tinyblob", False),
        ("blob", "mediumblob", True),
        ("blob", "longblob", True),
        ("mediumblob", "blob", False),
        ("blob", "varbinary(65535)", True),
        ("varbinary(8)", "binary(8)", False),  # BINARY pads with zero bytes
        ("binary(8)", "varbinary(8)", False),
        ("binary(8)", "binary(16)", False),
        ("varbinary(8)", "varchar(8)", False),
        ("bit(8)", "bit(16)", False),  # two bytes, not one
    ],
)
def test_byte_strings_widen_only_without_padding(src: str, dst: str, ok: bool) -> None:
    problem = lossless_problem(_bytes_col(src), _bytes_col(dst))
    assert (problem is None) == ok, problem
    if not ok:
        assert problem == f"is {src} in the source but {dst} in the target"
