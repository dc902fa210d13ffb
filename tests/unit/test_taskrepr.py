"""What Celery may show of a task's arguments: ids and counts, never a decline's contents."""

from __future__ import annotations

from types import SimpleNamespace

from tests.factories import make_valid_decline
from worker.taskrepr import declines_argsrepr, ids_argsrepr, safe_reprs


def test_producers_label_ids_by_task() -> None:
    assert ids_argsrepr("flexmit.evaluate", [12, 13]) == "order_pks=[12, 13]"
    assert ids_argsrepr("flexmit.poll", 3) == "order_pk=3"
    assert ids_argsrepr("flexmit.webhook", 7) == "event_pk=7"


def test_an_evaluate_batch_shows_its_first_ids_and_a_count() -> None:
    shown = ids_argsrepr("flexmit.evaluate", list(range(1, 31)))
    assert shown == f"order_pks=[{', '.join(map(str, range(1, 21)))}, +10]"


def test_intake_shows_only_the_order_ids() -> None:
    one, two = make_valid_decline(), make_valid_decline()
    shown = declines_argsrepr({"declines": [one, two]})
    assert shown == f"declines=2 orderIds=[{one['orderId']}, {two['orderId']}]"
    assert one["card"]["token"] not in shown and "Lovelace" not in shown


def test_a_card_number_in_an_order_id_is_withheld() -> None:
    for pan in ("4111111111111111", "4111 1111 1111 1111"):
        decline = make_valid_decline(orderId=pan)
        assert declines_argsrepr(decline) == "declines=1 orderIds=[<withheld>]"


def test_long_batches_are_cut_and_malformed_bodies_say_so() -> None:
    batch = {"declines": [make_valid_decline() for _ in range(8)]}
    assert declines_argsrepr(batch).endswith(", +3]")
    assert declines_argsrepr({"declines": "nope"}) == "declines=<malformed>"


def test_other_tasks_show_numbers_by_parameter_name_and_hide_the_rest() -> None:
    def run(push_pk: int, attempt: int | None = None) -> None: ...

    task = SimpleNamespace(run=run)
    assert safe_reprs("flexmit.push", task, [5, 2], {}) == ("push_pk=5, attempt=2", "{}")
    args, kwargs = safe_reprs("flexmit.push", task, ["card 4111"], {"x": {"a": 1}})
    assert args == "push_pk=<str>" and kwargs == "{x=<dict>}"
