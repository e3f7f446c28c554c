"""regrow.data.landing_files: records counted from a file's bytes, as Spark must read them."""

from __future__ import annotations

import pytest

from regrow.data.landing_files import _plain_records, _quoted_records

LINES = [b"a,b,c\n", b"1,2,3\n", b"\n", b"   \r\n", b"4,5\n", b"6,7,8\n", b"9,10,11,12\n", b"x,y,z"]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 24])
def test_plain_records_are_the_same_whatever_the_chunks(tmp_path, chunk):
    # Chunks smaller than a line, cutting lines anywhere, and a last line without newline.
    path = tmp_path / "f.csv"
    path.write_bytes(b"".join(LINES))

    good, bad, (longest, control) = _plain_records(str(path), header_line=1, fields=3, chunk=chunk)

    assert good == 3  # 1,2,3 / 6,7,8 / x,y,z: blank and white-space lines are no record
    assert [(r.first, r.text, r.problem) for r in bad] == [
        (5, "4,5", "malformed record: 2 field(s) where the header has 3"),
        (7, "9,10,11,12", "malformed record: 4 field(s) where the header has 3"),
    ]
    assert (longest, control) == (len("9,10,11,12"), False)


@pytest.mark.parametrize("chunk", [1, 5, 1 << 24])
@pytest.mark.parametrize(
    ("value", "control"),
    [
        (b"tab\there", False),
        (b"nul\x00", True),
        (b"del\x7f", True),
        (b"\x1b[0m", True),
        ("ü-ß\u00a0".encode(), False),
    ],  # fmt: skip
)
def test_the_bytes_tell_whether_any_value_holds_a_control_character(
    tmp_path, chunk, value, control
):
    # What lets ingest skip the control-character rule on a file: no false "clean".
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\r\n1,x\r\n2," + value + b"\r\n3,y")

    *_, (longest, found) = _plain_records(str(path), header_line=1, fields=2, chunk=chunk)

    assert found is control
    assert longest >= len(b"2," + value)


def test_an_unterminated_quote_takes_out_its_line_and_the_parse_resumes():
    lines = ["a,b\n", '1,"never closed\n', "2,3\n", "4,5\n"]

    records = _quoted_records(lines, header_line=1, fields=2)

    assert [(r.first, r.last, r.problem) for r in records] == [
        (2, 2, "malformed record: a quote opened on this line never closes"),
        (3, 3, None),
        (4, 4, None),
    ]
    assert records[0].text == '1,"never closed'


def test_a_stray_quote_closed_by_a_later_records_quote_takes_out_its_line_only():
    # Line 2's quote would close at line 4's opening quote, with text after it: the stray
    # quote is line 2's; line 3 and the legal two-line record of lines 4-5 are kept.
    lines = ["a,b\n", '1,"stray\n', "2,3\n", '4,"multi\n', 'line ""q"""\n', "5,6\n"]

    records = _quoted_records(lines, header_line=1, fields=2)

    assert [(r.first, r.last, r.problem is None) for r in records] == [
        (2, 2, False),
        (3, 3, True),
        (4, 5, True),
        (6, 6, True),
    ]
    assert records[0].problem.startswith("malformed record: a quote opened on this line closes")
