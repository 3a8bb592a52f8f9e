"""The pure rules of email ingest: subject tags, titles, loop protection, Message-IDs, bodies."""

from __future__ import annotations

import pytest

from service.domain.email import (
    EMPTY_BODY,
    NO_SUBJECT,
    body_text,
    is_auto_submitted,
    message_ids,
    normalise_message_id,
    thread_candidates,
    ticket_numbers_in_subject,
    title_from_subject,
)
from service.domain.errors import InvalidInput


# ---- subject tags ----------------------------------------------------------------------
@pytest.mark.parametrize("subject", [
    "[TKT-000123] Printer on fire",
    "Re: [TKT-000123] Printer on fire",
    "RE:[TKT-000123] Printer on fire",
    "re: re: [TKT-000123]",
    "Fwd: Re: [TKT-000123] Printer",
    "FW: [TKT-000123]",
    "AW: AW: [TKT-000123] Drucker brennt",
    "SV: [TKT-000123] Skrivaren brinner",
    "WG: Re[2]: [TKT-000123]",
    "Printer on fire [TKT-000123]",
    "Re: Printer on fire [ TKT-000123 ]",
    "[tkt-000123] lower case",
    "[Tkt - 000123] spaces round the hyphen",
    "[TKT 000123] a space instead of the hyphen",
    "[TKT–000123] an en dash",
    "[TKT-123] without leading zeros",
    "[TKT-0000123] with an extra zero",
    "Re:\t[TKT-000123]\tPrinter",
])
def test_ticket_tag_found_in_many_styles(subject: str) -> None:
    assert ticket_numbers_in_subject(subject) == ["TKT-000123"]


@pytest.mark.parametrize("subject", [
    "",
    "Printer on fire",
    "TKT-000123 without brackets",
    "[TKT-] no digits",
    "[TKT-12a] not a number",
    "[TICKET-000123] another prefix",
    "(TKT-000123) round brackets",
    "[ABC-000123]",
])
def test_no_ticket_tag(subject: str) -> None:
    assert ticket_numbers_in_subject(subject) == []


def test_several_tags_keep_their_order_without_repeats() -> None:
    subject = "Re: [TKT-000200] Fwd: [TKT-000100] Re: [TKT-000200]"
    assert ticket_numbers_in_subject(subject) == ["TKT-000200", "TKT-000100"]


def test_large_ticket_numbers_keep_their_digits() -> None:
    assert ticket_numbers_in_subject("[TKT-1234567]") == ["TKT-1234567"]


def test_at_most_a_few_tags_are_looked_up() -> None:
    subject = " ".join(f"[TKT-{n}]" for n in range(1, 50))
    assert ticket_numbers_in_subject(subject) == [f"TKT-{n:06d}" for n in range(1, 6)]


# ---- titles ----------------------------------------------------------------------------
@pytest.mark.parametrize(("subject", "title"), [
    ("Printer on fire", "Printer on fire"),
    ("Re: Printer on fire", "Printer on fire"),
    ("RE: re: Re:Printer on fire", "Printer on fire"),
    ("Fwd: FW: Printer on fire", "Printer on fire"),
    ("AW: WG: Drucker brennt", "Drucker brennt"),
    ("SV: VS: Skrivaren brinner", "Skrivaren brinner"),
    ("Re[3]: Printer", "Printer"),
    ("Re (2): Printer", "Printer"),
    ("Re : Printer", "Printer"),
    ("Re：Printer", "Printer"),
    ("Re: [TKT-000123] Printer on fire", "Printer on fire"),
    ("[TKT-000123] Re: Printer on fire", "Printer on fire"),
    ("Printer   on\tfire\n", "Printer on fire"),
    ("Re: Reboot needed", "Reboot needed"),
    ("Resolution of the screen", "Resolution of the screen"),
    ("Aware: Fwd is not a prefix here", "Aware: Fwd is not a prefix here"),
    ("Svar på fråga", "Svar på fråga"),
    ("Question: Re: printers", "Question: Re: printers"),
])
def test_title_is_the_subject_without_prefixes_and_tags(subject: str, title: str) -> None:
    assert title_from_subject(subject, 200) == title


@pytest.mark.parametrize("subject", ["", "   ", "Re:", "Re: Fwd: ", "[TKT-000123]", "Re: [TKT-000123]", "\x00"])
def test_nothing_left_gives_no_subject(subject: str) -> None:
    assert title_from_subject(subject, 200) == NO_SUBJECT


def test_title_is_cut_to_the_limit_without_trailing_space() -> None:
    subject = "Re: " + "word " * 100
    title = title_from_subject(subject, 200)
    assert len(title) <= 200 and title == title.strip() and title.startswith("word word")
    assert title_from_subject("x" * 500, 200) == "x" * 200


def test_title_loses_nul_characters() -> None:
    assert title_from_subject("Print\x00er", 200) == "Printer"


# ---- loop protection (RFC 3834 and friends) -----------------------------------------------
HUMAN = "jane@example.test"


@pytest.mark.parametrize("header", [
    "auto-replied",
    "auto-generated",
    "auto-notified",
    "Auto-Replied",
    " AUTO-GENERATED ",
    "auto-replied; owner-email=\"bot@example.test\"",
    "auto-generated;owner-token=abc",
    "auto-replied (vacation)",
    "some-future-value",
])
def test_auto_submitted_other_than_no_is_automatic(header: str) -> None:
    assert is_auto_submitted(False, header, None, HUMAN)


@pytest.mark.parametrize("header", ["no", "No", " NO ", "no; x=y", "no (sent by a person)", ""])
def test_auto_submitted_no_is_a_person(header: str) -> None:
    assert not is_auto_submitted(False, header, None, HUMAN)


@pytest.mark.parametrize("precedence", ["bulk", "junk", "list", "Bulk", " LIST ", "auto_reply", "bulk; x=1"])
def test_bulk_precedence_is_automatic(precedence: str) -> None:
    assert is_auto_submitted(False, None, precedence, HUMAN)


@pytest.mark.parametrize("precedence", ["first-class", "normal", "urgent", ""])
def test_other_precedence_is_a_person(precedence: str) -> None:
    assert not is_auto_submitted(False, None, precedence, HUMAN)


@pytest.mark.parametrize("sender", [
    "mailer-daemon@example.test", "MAILER-DAEMON@mx.example.test", "postmaster@example.test",
    "Postmaster@example.test", "mailer_daemon@example.test", "mailer-daemon+bounce@example.test",
])
def test_bounces_are_automatic(sender: str) -> None:
    assert is_auto_submitted(False, None, None, sender)


@pytest.mark.parametrize("sender", ["daemon@example.test", "mailer@example.test", "post.master@example.test"])
def test_ordinary_senders_are_people(sender: str) -> None:
    assert not is_auto_submitted(False, None, None, sender)


def test_the_gateways_flag_wins() -> None:
    assert is_auto_submitted(True, "no", "first-class", HUMAN)
    assert not is_auto_submitted(False, None, None, HUMAN)


# ---- Message-IDs -----------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["<abc@example.test>", "abc@example.test", "  <abc@example.test> ", "<abc@example.test"])
def test_message_ids_take_the_header_form(raw: str) -> None:
    assert normalise_message_id(raw) == "<abc@example.test>"


def test_message_ids_keep_their_case() -> None:
    assert normalise_message_id("<AbC@Example.test>") == "<AbC@Example.test>"


def test_references_may_come_as_one_header_or_as_a_list() -> None:
    assert message_ids(["<a@x> <b@x>\r\n <c@x>"]) == ["<a@x>", "<b@x>", "<c@x>"]
    assert message_ids(["<a@x>", "b@x", "c@x d@x"]) == ["<a@x>", "<b@x>", "<c@x>", "<d@x>"]


def test_threading_tries_in_reply_to_then_references_newest_first() -> None:
    candidates = thread_candidates("<c@x>", ["<a@x>", "<b@x> <c@x>"])
    assert candidates == ["<c@x>", "<b@x>", "<a@x>"]
    assert thread_candidates(None, []) == []
    assert thread_candidates(None, ["<a@x> <b@x>"]) == ["<b@x>", "<a@x>"]


# ---- bodies ----------------------------------------------------------------------------
def test_body_is_kept_as_is_including_quoted_history() -> None:
    body = "Still broken.\n\nOn Mon, Support wrote:\n> Have you tried turning it off?\n>\n> -- \n> Support\n"
    assert body_text(body, 20_000, "a description") == body


def test_blank_body_becomes_a_placeholder() -> None:
    assert body_text("", 100, "x") == EMPTY_BODY
    assert body_text(" \r\n\t", 100, "x") == EMPTY_BODY


def test_body_at_the_limit_passes_and_beyond_is_refused_clearly() -> None:
    assert body_text("x" * 100, 100, "a reply") == "x" * 100
    with pytest.raises(InvalidInput, match=r"101 characters; a reply may have at most 100"):
        body_text("x" * 101, 100, "a reply")


def test_nul_characters_are_dropped_before_counting() -> None:
    assert body_text("a\x00b", 2, "x") == "ab"
